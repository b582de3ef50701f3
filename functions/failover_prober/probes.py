"""The prober's two network probes, standard library only (the Lambda ships no dependencies).

- `postgres_answers`: does a Postgres server answer at host:port? Sends the protocol's SSLRequest and
  waits for its one-byte answer ('S' or 'N'), so a middlebox that merely accepts TCP does not count.
- `txt_records`: a DNS TXT query over UDP to a resolver (the VPC's), answered from Route53's data plane.
"""

from __future__ import annotations

import secrets
import socket
import struct

# SSLRequest: length 8, then the code 80877103 (1234 << 16 | 5679). Postgres protocol, "Message Formats".
SSL_REQUEST = struct.pack("!II", 8, 80877103)
DNS_PORT = 53
TXT, IN = 16, 1
RCODE_NXDOMAIN = 3


def postgres_answers(host: str, port: int, timeout: float) -> bool:
    """True when a Postgres server answers the SSLRequest within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


class DnsError(RuntimeError):
    """No usable answer: timeout, a malformed reply, or a server failure."""


def resolver_address(resolv_conf: str = "/etc/resolv.conf") -> str:
    """The first nameserver the system uses (in a VPC Lambda: the VPC's Route53 Resolver)."""
    with open(resolv_conf, encoding="ascii") as conf:
        for line in conf:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    raise DnsError(f"no nameserver in {resolv_conf}")


def txt_records(name: str, resolver: str, timeout: float, port: int = DNS_PORT) -> list[str]:
    """The TXT strings at `name` ([] when the name does not exist)."""
    query_id = secrets.randbits(16)
    question = _encode_name(name) + struct.pack("!HH", TXT, IN)
    # Header: id, flags (recursion desired), 1 question, no answers/authority/additional.
    query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query, (resolver, port))
            while True:
                reply, _ = sock.recvfrom(4096)
                if len(reply) >= 2 and struct.unpack("!H", reply[:2])[0] == query_id:
                    break
        except OSError as error:
            raise DnsError(f"no answer from {resolver} for {name}: {error}") from None
    return _parse_txt(reply, name)


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def _skip_name(message: bytes, offset: int) -> int:
    """The offset just past a (possibly compressed) name."""
    while True:
        if offset >= len(message):
            raise DnsError("truncated name")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2  # a pointer ends the name
        if length == 0:
            return offset + 1
        offset += 1 + length


def _parse_txt(message: bytes, name: str) -> list[str]:
    if len(message) < 12:
        raise DnsError("reply shorter than a header")
    _, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", message[:12])
    rcode = flags & 0x000F
    if rcode == RCODE_NXDOMAIN:
        return []
    if rcode != 0:
        raise DnsError(f"{name}: resolver answered rcode {rcode}")
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(message, offset) + 4
    found: list[str] = []
    for _ in range(ancount):
        offset = _skip_name(message, offset)
        rtype, _, _, rdlength = struct.unpack("!HHIH", message[offset : offset + 10])
        offset += 10
        rdata = message[offset : offset + rdlength]
        offset += rdlength
        if rtype != TXT:
            continue  # e.g. a CNAME in the chain
        strings, i = [], 0
        while i < len(rdata):
            length = rdata[i]
            strings.append(rdata[i + 1 : i + 1 + length].decode("utf-8", "replace"))
            i += 1 + length
        found.append("".join(strings))
    return found
