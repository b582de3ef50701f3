"""Just enough of the PostgreSQL frontend/backend protocol (version 3.0) to run a few statements: TLS,
SCRAM-SHA-256 authentication and the simple query protocol. Standard library only, so the Lambda ships
no dependencies. Protocol reference: PostgreSQL documentation, "Frontend/Backend Protocol"."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass

SSL_REQUEST_CODE = 80877103
PROTOCOL_3_0 = 196608
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 5, 10, 11, 12
SCRAM_ITERATIONS = 4096


class PostgresError(RuntimeError):
    """An ErrorResponse from the server (SQLSTATE and message), or a protocol failure."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(f"{sqlstate}: {message}" if sqlstate else message)
        self.sqlstate = sqlstate


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    database: str
    user: str
    password: str


class Connection:
    """One authenticated session. TLS is required (Aurora here forces it); the server's certificate is
    verified against `cafile` when given, as the RDS CA bundle would be."""

    def __init__(self, endpoint: Endpoint, timeout: float = 10.0, cafile: str | None = None) -> None:
        raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        try:
            raw.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
            if raw.recv(1) != b"S":
                raise PostgresError("the server refused TLS")
            context = ssl.create_default_context(cafile=cafile)
            if cafile is None:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._sock = context.wrap_socket(raw, server_hostname=endpoint.host)
        except BaseException:
            raw.close()
            raise
        self._buffer = b""
        self._startup(endpoint)

    def close(self) -> None:
        try:
            self._send(b"X", b"")
        finally:
            self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def execute(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run `sql` (one or more statements) with the simple query protocol; the rows of the last result."""
        self._send(b"Q", sql.encode() + b"\x00")
        rows: list[tuple[str | None, ...]] = []
        error: PostgresError | None = None
        while True:
            kind, body = self._receive()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                rows.append(_data_row(body))
            elif kind == b"E":
                error = _error(body)
            elif kind == b"Z":
                if error is not None:
                    raise error
                return rows

    # --- protocol ---------------------------------------------------------------------------------------

    def _startup(self, endpoint: Endpoint) -> None:
        params = b"".join(
            k.encode() + b"\x00" + v.encode() + b"\x00"
            for k, v in (
                ("user", endpoint.user),
                ("database", endpoint.database),
                ("client_encoding", "UTF8"),
            )
        )
        body = struct.pack("!I", PROTOCOL_3_0) + params + b"\x00"
        self._sock.sendall(struct.pack("!I", len(body) + 4) + body)
        scram: _Scram | None = None
        while True:
            kind, body = self._receive()
            if kind == b"E":
                raise _error(body)
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code == AUTH_OK:
                    continue
                if code == AUTH_SASL:
                    mechanisms = body[4:].split(b"\x00")
                    if b"SCRAM-SHA-256" not in mechanisms:
                        raise PostgresError(f"no supported SASL mechanism in {mechanisms!r}")
                    scram = _Scram(endpoint.password)
                    first = scram.client_first()
                    self._send(b"p", b"SCRAM-SHA-256\x00" + struct.pack("!I", len(first)) + first)
                elif code == AUTH_SASL_CONTINUE and scram is not None:
                    self._send(b"p", scram.client_final(body[4:]))
                elif code == AUTH_SASL_FINAL and scram is not None:
                    scram.verify_server(body[4:])
                elif code == AUTH_MD5:
                    salt = body[4:8]
                    inner = hashlib.md5((endpoint.password + endpoint.user).encode()).hexdigest()
                    digest = hashlib.md5(inner.encode() + salt).hexdigest()
                    self._send(b"p", b"md5" + digest.encode() + b"\x00")
                elif code == AUTH_CLEARTEXT:
                    self._send(b"p", endpoint.password.encode() + b"\x00")
                else:
                    raise PostgresError(f"unsupported authentication request {code}")
            elif kind == b"Z":
                return  # ReadyForQuery: parameter statuses and the backend key came before it

    def _send(self, kind: bytes, body: bytes) -> None:
        self._sock.sendall(kind + struct.pack("!I", len(body) + 4) + body)

    def _receive(self) -> tuple[bytes, bytes]:
        header = self._read(5)
        (length,) = struct.unpack("!I", header[1:5])
        return header[:1], self._read(length - 4)

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise PostgresError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data


class _Scram:
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding."""

    def __init__(self, password: str) -> None:
        self._password = password.encode()
        self._nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._client_first_bare = f"n=,r={self._nonce}"
        self._server_signature = b""

    def client_first(self) -> bytes:
        return f"n,,{self._client_first_bare}".encode()

    def client_final(self, server_first: bytes) -> bytes:
        fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
        if not fields["r"].startswith(self._nonce):
            raise PostgresError("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(
            "sha256", self._password, base64.b64decode(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={fields['r']}"
        auth_message = f"{self._client_first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server(self, server_final: bytes) -> None:
        fields = dict(item.split("=", 1) for item in server_final.decode().split(","))
        if not hmac.compare_digest(base64.b64decode(fields.get("v", "")), self._server_signature):
            raise PostgresError("SCRAM: the server's signature does not match")


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (what `ALTER ROLE ... PASSWORD` accepts
    pre-hashed), so the password itself never appears in a statement or a server log."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    keys = f"{b64(stored_key).decode()}:{b64(server_key).decode()}"
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${keys}"


def quote_literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on in every supported version)."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _data_row(body: bytes) -> tuple[str | None, ...]:
    (count,) = struct.unpack("!H", body[:2])
    offset, values = 2, []
    for _ in range(count):
        (length,) = struct.unpack("!i", body[offset : offset + 4])
        offset += 4
        if length < 0:
            values.append(None)
        else:
            values.append(body[offset : offset + length].decode())
            offset += length
    return tuple(values)


def _error(body: bytes) -> PostgresError:
    fields = {part[:1]: part[1:].decode("utf-8", "replace") for part in body.split(b"\x00") if part}
    return PostgresError(fields.get(b"M", "unknown error"), fields.get(b"C"))
