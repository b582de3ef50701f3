"""The heartbeat witness: one row written every few seconds through the global writer by a function in the
primary region (`handle`, deployed from this package), read by the prober from the standby's own replica
(`HeartbeatReader`). The row reaches the standby by Aurora's replication: not over the VPC peering and
not through a gateway, so neither can fake its stopping.

Why a function of its own in the primary region rather than the gateway's sidecar: the witness must stop
only when the writer does. A sidecar stops with its gateway, and a failing gateway is exactly what makes
Route53 say "failing": with the peering broken as well, all three witnesses would then agree about a live
writer. A function depends on the region's Lambda service, not on the gateway's deployments.

Both sides log in with IAM database authentication: a token the function's role signs (valid 15 minutes,
for one database user), so no password exists to store, leak or rotate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .decision import UNKNOWN_HEARTBEAT, Heartbeat
from .pgwire import Connection, Endpoint, PostgresError, quote_literal
from .settings import HEARTBEAT_TABLE, HeartbeatSettings

log = logging.getLogger("failover_heartbeat")
log.setLevel(logging.INFO)

# One statement, committed on its own: the beat is the writer's clock when the row changed.
WRITE = (
    f"UPDATE {HEARTBEAT_TABLE} SET seq = seq + 1, beat_at = clock_timestamp(), region = {{region}} "
    "WHERE id = 1"
)
# The beat, and its age by the reading server's clock (replication lag plus the time since the write).
READ = (
    "SELECT EXTRACT(EPOCH FROM beat_at), EXTRACT(EPOCH FROM clock_timestamp() - beat_at), seq "
    f"FROM {HEARTBEAT_TABLE} WHERE id = 1"
)

Password = Callable[[], str]


class HeartbeatError(RuntimeError):
    """A whole run wrote no beat: the function fails, and its errors alarm."""


def iam_token(host: str, port: int, user: str, region: str) -> Password:
    """A fresh IAM database authentication token per connection (signed locally: no API call)."""
    import boto3  # the Lambda runtime provides it; imported here so tests need no AWS session

    rds = boto3.client("rds", region_name=region)
    return lambda: rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)


@dataclass(frozen=True)
class Database:
    """Where and as whom to connect; `password` is asked anew for each connection."""

    host: str
    port: int
    name: str
    user: str
    password: Password
    timeout: float = 5.0

    def connect(self) -> Connection:
        endpoint = Endpoint(self.host, self.port, self.name, self.user, self.password())
        return Connection(endpoint, timeout=self.timeout)


def _close(connection: Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(OSError, PostgresError):
            connection.close()


class HeartbeatReader:
    """Reads the heartbeat from one server, keeping its connection between reads; any failure is an
    unknown heartbeat (never a stopped one) and the next read connects again."""

    def __init__(self, database: Database, stale_after_seconds: float) -> None:
        self._database = database
        self._stale_after = stale_after_seconds
        self._connection: Connection | None = None

    def read(self) -> Heartbeat:
        try:
            if self._connection is None:
                self._connection = self._database.connect()
            rows = self._connection.execute(READ)
        except (OSError, PostgresError) as error:
            log.warning(json.dumps({"heartbeat": "unreadable", "error": f"{type(error).__name__}: {error}"}))
            self.close()
            return UNKNOWN_HEARTBEAT
        if not rows:
            return UNKNOWN_HEARTBEAT  # no row: the bootstrap has not run
        beat_epoch, age, _ = rows[0]
        if beat_epoch is None or age is None:
            return UNKNOWN_HEARTBEAT
        return Heartbeat.read(datetime.fromtimestamp(float(beat_epoch), UTC), float(age), self._stale_after)

    def close(self) -> None:
        _close(self._connection)
        self._connection = None


def beat(
    settings: HeartbeatSettings,
    database: Database,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Write the heartbeat every `interval_seconds` for `run_seconds`, reconnecting after any failure."""
    statement = WRITE.format(region=quote_literal(settings.region))
    started = clock()
    written = failed = 0
    last_error: str | None = None
    connection: Connection | None = None
    next_beat = started
    while not should_stop():
        try:
            if connection is None:
                connection = database.connect()
            connection.execute(statement)
            written += 1
        except (OSError, PostgresError) as error:
            failed += 1
            last_error = f"{type(error).__name__}: {error}"
            _close(connection)
            connection = None
        next_beat += settings.interval_seconds
        if next_beat - started > settings.run_seconds:
            break
        sleep(max(0.0, next_beat - clock()))
    _close(connection)
    outcome: dict[str, Any] = {"written": written, "failed": failed, "lastError": last_error}
    log.info(json.dumps(outcome))
    if not written and failed:
        raise HeartbeatError(f"no heartbeat written in {failed} attempts; last error: {last_error}")
    return outcome


def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge schedule, every minute; runs overlap)."""
    del event, context
    settings = HeartbeatSettings.from_env()
    password = iam_token(settings.writer_host, settings.database_port, settings.writer_user, settings.region)
    database = Database(
        settings.writer_host, settings.database_port, settings.database_name, settings.writer_user, password
    )
    return beat(settings, database)
