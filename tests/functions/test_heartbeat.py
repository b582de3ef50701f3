"""The heartbeat witness against a real PostgreSQL: the writer's loop beats through the table the bootstrap
made, as the role it made; the reader sees the beat advance, then stop; a run that writes nothing fails
(the function's errors alarm), and an unreadable heartbeat is unknown, never stopped."""

from __future__ import annotations

import pytest
from testkit.postgres import Postgres

from functions.db_bootstrap.handler import bootstrap
from functions.failover_prober.heartbeat import Database, HeartbeatError, HeartbeatReader, beat
from functions.failover_prober.settings import HeartbeatSettings

TOKEN = "stands-in-for-an-iam-token"


@pytest.fixture
def database(postgres: Postgres) -> str:
    name = "heartbeat_db"
    postgres.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hb_master') THEN "
        "CREATE ROLE hb_master LOGIN CREATEROLE CREATEDB PASSWORD 'master-secret-2'; END IF; END $$"
    )
    if postgres.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "0":
        postgres.psql(f"CREATE DATABASE {name} OWNER hb_master")
    bootstrap(
        {
            "host": postgres.host, "port": postgres.port, "database": name, "masterUser": "hb_master",
            "masterPassword": "master-secret-2", "gatewayUser": "hb_gateway", "gatewayPassword": "gateway-2",
            "witness": {"table": "fleet_failover.heartbeat", "writer": "fleet_heartbeat", "reader": "fleet_prober"},
        }
    )  # fmt: skip
    for role in ("fleet_heartbeat", "fleet_prober"):
        postgres.psql(f"ALTER ROLE {role} PASSWORD '{TOKEN}'")
    return name


def settings(postgres: Postgres, database: str, run_seconds: float = 0.3) -> HeartbeatSettings:
    return HeartbeatSettings(
        writer_host=postgres.host,
        database_port=postgres.port,
        database_name=database,
        writer_user="fleet_heartbeat",
        region="us-east-1",
        interval_seconds=0.1,
        run_seconds=run_seconds,
    )


def test_the_beat_advances_on_the_replica_side_and_stops_with_its_writer(postgres: Postgres, database: str):
    writer = Database(postgres.host, postgres.port, database, "fleet_heartbeat", lambda: TOKEN)
    reader = HeartbeatReader(
        Database(postgres.host, postgres.port, database, "fleet_prober", lambda: TOKEN), 60
    )
    outcome = beat(settings(postgres, database), writer)
    assert outcome["written"] >= 2 and outcome["failed"] == 0
    advancing = reader.read()
    assert advancing.status == "advancing" and advancing.last_beat is not None
    # Read against a threshold the beat is already past: stopped, with when it was written.
    stale = HeartbeatReader(
        Database(postgres.host, postgres.port, database, "fleet_prober", lambda: TOKEN), 0
    )
    stopped = stale.read()
    assert stopped.status == "stopped" and stopped.last_beat == advancing.last_beat
    assert postgres.psql("SELECT region FROM fleet_failover.heartbeat", database=database) == "us-east-1"
    reader.close()
    stale.close()


def test_a_run_that_writes_nothing_fails_and_an_unreadable_beat_is_unknown(postgres: Postgres, database: str):
    refused = Database(postgres.host, postgres.port, database, "fleet_heartbeat", lambda: "a wrong token")
    with pytest.raises(HeartbeatError, match="no heartbeat written"):
        beat(settings(postgres, database), refused)
    unreadable = HeartbeatReader(
        Database(postgres.host, postgres.port, database, "fleet_prober", lambda: "no"), 30
    )
    assert unreadable.read().status == "unknown"
    nobody = HeartbeatReader(Database(postgres.host, 1, database, "fleet_prober", lambda: TOKEN, 0.5), 30)
    assert nobody.read().status == "unknown"
