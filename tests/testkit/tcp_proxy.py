"""A TCP proxy on 127.0.0.1 in front of one server, with a fault switch: `blackhole()` makes the path
silently stop carrying anything, both ways, as a broken route, NACL or security group does (no reset, no
refusal: a client's connect completes in the kernel's backlog and its bytes go unanswered until it times
out); `restore()` carries traffic again, the held bytes included."""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._carrying = threading.Event()
        self._carrying.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)

    def blackhole(self) -> None:
        self._carrying.clear()

    def restore(self) -> None:
        self._carrying.set()

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._carrying.set()
        self._thread.join(5)
        for sock in [*self._peers, self._listener]:
            sock.close()
        self._selector.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._carrying.wait(0.1):
                continue  # a blackhole: nothing is accepted, read or sent
            for key, _ in self._selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._carry(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self._target, timeout=2)
        except OSError:
            client.close()  # the server itself is down: its refusal is passed on
            return
        for one, other in ((client, upstream), (upstream, client)):
            one.setblocking(True)
            self._peers[one] = other
            self._selector.register(one, selectors.EVENT_READ)

    def _carry(self, sock: socket.socket) -> None:
        other = self._peers[sock]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, other):
            self._selector.unregister(end)
            self._peers.pop(end, None)
            end.close()


@contextmanager
def tcp_proxy(target_host: str, target_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port).start()
    try:
        yield proxy
    finally:
        proxy.close()
