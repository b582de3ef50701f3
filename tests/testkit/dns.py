"""A DNS server on 127.0.0.1 whose answers dnspython builds: an independent implementation of the wire
format to check a hand-written client against."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rrset


@contextmanager
def dns_server(zone: dict[str, list[str]], rcode: int = dns.rcode.NOERROR) -> Iterator[int]:
    """UDP DNS on 127.0.0.1 answering TXT queries from `zone` (NXDOMAIN for other names)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, client = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            (question,) = query.question
            name = question.name.to_text(omit_final_dot=True)
            if rcode != dns.rcode.NOERROR:
                response.set_rcode(rcode)
            elif name in zone:
                # A CNAME first, as a resolver following an alias answers; the probe skips it.
                response.answer.append(
                    dns.rrset.from_text(question.name, 10, "IN", "CNAME", "alias.example.")
                )
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 10, "IN", "TXT", [f'"{v}"' for v in zone[name]])
                )
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), client)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        sock.close()
