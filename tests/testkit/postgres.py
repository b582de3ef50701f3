"""A real PostgreSQL server for a test: initdb in a temporary directory, TLS on, SCRAM passwords, a free
port on 127.0.0.1. Laid out as RDS lays out Aurora: a bootstrap superuser the operator never gets, a
master user with CREATEROLE and CREATEDB, the application database owned by the master, and RDS's
`rds_iam` role (membership means IAM database authentication on RDS; here it is only a role).

`running_pair` adds a streaming replica of it (pg_basebackup -R), as a global database's secondary
cluster replicates its writer: the failover drills stop the primary and promote the replica."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from node_image.agent.tests.agent_testkit.net import free_port

SUPERUSER = "rdsadmin"
IAM_ROLE = "rds_iam"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    superuser_password: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: `immediate` drops every connection at once, as a lost machine would (no
        checkpoint, no goodbye to clients or replicas)."""
        subprocess.run(
            [*_as_postgres_user(), _binary("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        if self.process is not None:
            self.process.wait(20)

    def is_replica(self) -> bool:
        return self.psql("SELECT pg_is_in_recovery()") == "t"

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
    with tempfile.TemporaryDirectory(prefix="fleet-postgres-") as name, _primary(Path(name)) as server:
        yield server


@contextlib.contextmanager
def running_pair() -> Iterator[tuple[Postgres, Postgres]]:
    """A primary and its streaming replica (asynchronous, as Aurora's cross-region replication is)."""
    with tempfile.TemporaryDirectory(prefix="fleet-postgres-") as name, _primary(Path(name)) as primary:
        replica_data = Path(name) / "replica"
        subprocess.run(
            [*_as_postgres_user(), "env", f"PGPASSWORD={primary.superuser_password}", _binary("pg_basebackup"),
             "-h", primary.host, "-p", str(primary.port), "-U", SUPERUSER, "-D", str(replica_data),
             "-R", "-X", "stream", "-c", "fast", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with _started(Path(name), replica_data, primary.superuser_password) as replica:
            yield primary, replica


@contextlib.contextmanager
def _primary(directory: Path) -> Iterator[Postgres]:
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
    subprocess.run(
        [*_as_postgres_user(), _binary("initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "scram-sha-256",
         f"--pwfile={directory / 'pw'}", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    with _started(directory, data, password) as server:
        server.psql(f"CREATE ROLE {IAM_ROLE} NOLOGIN")
        yield server


@contextlib.contextmanager
def _started(directory: Path, data: Path, password: str) -> Iterator[Postgres]:
    """The server on `data` (a fresh cluster, or a replica's base backup), answering on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [*_as_postgres_user(), _binary("postgres"), "-D", str(data), "-p", str(port), "-k", str(directory),
         "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", f"ssl_cert_file={directory / 'server.crt'}",
         "-c", f"ssl_key_file={directory / 'server.key'}", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = Postgres("127.0.0.1", port, password, data, process)
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
        if process.poll() is None:
            # Fast: sessions still open (a test's clients) are ended, not waited for.
            with contextlib.suppress(subprocess.SubprocessError):
                server.stop("fast")
        if process.poll() is None:
            process.terminate()
            process.wait(20)
