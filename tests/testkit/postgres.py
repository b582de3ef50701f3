"""A real PostgreSQL server for a test: initdb in a temporary directory, TLS on, SCRAM passwords, a free
port on 127.0.0.1. Laid out as RDS lays out Aurora: a bootstrap superuser the operator never gets, a
master user with CREATEROLE and CREATEDB, and the application database owned by the master."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from node_image.agent.tests.agent_testkit.net import free_port

SUPERUSER = "rdsadmin"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    superuser_password: str
    data_dir: Path

    def psql(
        self, sql: str, user: str = SUPERUSER, password: str | None = None, database: str = "postgres"
    ) -> str:
        """Run SQL with the real psql client (over TLS, as `user`), in one transaction; its unaligned output."""
        return self._psql(["-c", sql], user, password, database)

    def psql_file(
        self, path: Path, user: str = SUPERUSER, password: str | None = None, database: str = "postgres"
    ) -> str:
        """Run a SQL file statement by statement, as a migration tool does (CREATE INDEX CONCURRENTLY
        refuses a transaction block)."""
        return self._psql(["-f", str(path)], user, password, database)

    def url(self, user: str, password: str, database: str) -> str:
        """A client's URL for this server, as the gateway's DATABASE_URL is written."""
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{database}?sslmode=require"

    def _psql(self, args: list[str], user: str, password: str | None, database: str) -> str:
        env = {
            **os.environ,
            "PGPASSWORD": password or self.superuser_password,
            "PGSSLMODE": "require",
            "PGCONNECT_TIMEOUT": "5",
        }
        result = subprocess.run(
            [_binary("psql"), "-h", self.host, "-p", str(self.port), "-U", user, "-d", database, "-XAtq",
             "-v", "ON_ERROR_STOP=1", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return result.stdout.strip()


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None
    )
    if found is None:
        raise FileNotFoundError(
            f"PostgreSQL's {name} is not installed: run scripts/setup.sh (apt-get install -y postgresql)"
        )
    return found


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: drop to the `postgres` account there."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    # Its own directory directly under the temporary root: as root, the server runs as `postgres`, which
    # must be able to reach it (pytest's own tmp_path sits under a directory only root may enter).
    with tempfile.TemporaryDirectory(prefix="fleet-postgres-") as name:
        yield from _serve(Path(name))


def _serve(directory: Path) -> Iterator[Postgres]:
    password = "superuser-secret"
    (directory / "pw").write_text(password + "\n")
    data = directory / "data"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(directory / "server.key"), "-out", str(directory / "server.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    (directory / "server.key").chmod(0o600)
    if os.geteuid() == 0:
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, "postgres")
    run = _as_postgres_user()
    subprocess.run(
        [*run, _binary("initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "scram-sha-256",
         f"--pwfile={directory / 'pw'}", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [*run, _binary("postgres"), "-D", str(data), "-p", str(port), "-k", str(directory),
         "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", f"ssl_cert_file={directory / 'server.crt'}",
         "-c", f"ssl_key_file={directory / 'server.key'}", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = Postgres("127.0.0.1", port, password, data)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                server.psql("SELECT 1")
                break
            except RuntimeError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(20)
