"""The gateway's database role, created by functions/db_bootstrap against a real PostgreSQL laid out as
RDS lays out Aurora (a master user with CREATEROLE/CREATEDB that owns the application database)."""

from __future__ import annotations

import itertools

import pytest
from testkit.postgres import Postgres

from functions.db_bootstrap.handler import bootstrap
from functions.db_bootstrap.pgwire import Connection, Endpoint, PostgresError

MASTER, MASTER_PASSWORD = "litellm", "master-secret-1"
_databases = itertools.count()


@pytest.fixture
def database(postgres: Postgres) -> str:
    """A fresh application database owned by the master, with a table an earlier gateway created as master."""
    name = f"litellm{next(_databases)}"
    postgres.psql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MASTER}') THEN "
        f"CREATE ROLE {MASTER} LOGIN CREATEROLE CREATEDB PASSWORD '{MASTER_PASSWORD}'; END IF; END $$"
    )
    postgres.psql(f"CREATE DATABASE {name} OWNER {MASTER}")
    postgres.psql(f"CREATE DATABASE {name}_other OWNER {MASTER}")
    # What an earlier gateway, logged in as the master user, left behind: a table with a serial column, an
    # enum type, a view, a standalone sequence.
    postgres.psql(
        "CREATE TYPE \"JobStatus\" AS ENUM ('queued', 'done'); "
        'CREATE TABLE "LiteLLM_VerificationToken" (token text primary key, n serial, status "JobStatus"); '
        'CREATE VIEW "LiteLLM_TokenView" AS SELECT token FROM "LiteLLM_VerificationToken"; '
        "CREATE SEQUENCE standalone_seq",
        user=MASTER,
        password=MASTER_PASSWORD,
        database=name,
    )
    return name


def event(
    postgres: Postgres, database: str, role: str = "litellm_gateway", password: str = "gw-p@ss'word"
) -> dict:
    return {
        "host": postgres.host,
        "port": postgres.port,
        "database": database,
        "masterUser": MASTER,
        "masterPassword": MASTER_PASSWORD,
        "gatewayUser": role,
        "gatewayPassword": password,
    }


def owner_of(postgres: Postgres, database: str, what: str) -> str:
    queries = {
        "database": f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'",
        "schema": "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'",
        "table": "SELECT tableowner FROM pg_tables WHERE tablename = 'LiteLLM_VerificationToken'",
        "view": "SELECT viewowner FROM pg_views WHERE viewname = 'LiteLLM_TokenView'",
        "type": "SELECT pg_get_userbyid(typowner) FROM pg_type WHERE typname = 'JobStatus'",
        "sequences": "SELECT string_agg(DISTINCT sequenceowner, ',') FROM pg_sequences WHERE schemaname = 'public'",
    }
    return postgres.psql(queries[what], database=database)


def test_the_gateway_gets_its_own_role_that_owns_its_database(postgres, database):
    outcome = bootstrap(event(postgres, database))
    assert outcome == {
        "role": "litellm_gateway",
        "database": database,
        "databaseOwner": "litellm_gateway",
        "created": outcome["created"],
    }
    for what in ("database", "schema", "table", "view", "type", "sequences"):
        assert owner_of(postgres, database, what) == "litellm_gateway", what
    # Only this database: the master keeps what it owns elsewhere.
    assert (
        postgres.psql(f"SELECT count(*) FROM pg_database WHERE pg_get_userbyid(datdba) = '{MASTER}'") != "0"
    )
    # The real psql client logs in as the gateway with its password, and can run migrations.
    as_gateway = {"user": "litellm_gateway", "password": "gw-p@ss'word", "database": database}
    postgres.psql('ALTER TABLE "LiteLLM_VerificationToken" ADD COLUMN spend float', **as_gateway)
    postgres.psql("CREATE TABLE migrated (id int)", **as_gateway)
    flags = postgres.psql(
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user", **as_gateway
    )
    assert flags == "f|f|f"


def test_the_password_is_stored_as_a_scram_verifier_never_in_clear(postgres, database):
    bootstrap(event(postgres, database, password="clear-text-must-not-appear"))
    stored = postgres.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'litellm_gateway'")
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert "clear-text-must-not-appear" not in stored


def test_running_it_again_changes_the_password_and_nothing_else(postgres, database):
    bootstrap(event(postgres, database, password="first-password"))
    again = bootstrap(event(postgres, database, password="second-password"))
    assert again["created"] is False
    assert owner_of(postgres, database, "database") == "litellm_gateway"
    postgres.psql("SELECT 1", user="litellm_gateway", password="second-password", database=database)
    with pytest.raises(RuntimeError, match="password authentication failed"):
        postgres.psql("SELECT 1", user="litellm_gateway", password="first-password", database=database)


def test_the_master_user_is_refused_as_the_gateway_role(postgres, database):
    with pytest.raises(ValueError, match="must not be the master user"):
        bootstrap(event(postgres, database, role=MASTER))
    with pytest.raises(ValueError, match="plain lower-case identifier"):
        bootstrap(event(postgres, database, role='x"; DROP DATABASE postgres; --'))


def test_the_client_authenticates_with_scram_over_tls_and_reports_server_errors(postgres, database):
    endpoint = Endpoint(postgres.host, postgres.port, database, MASTER, MASTER_PASSWORD)
    with Connection(endpoint) as conn:
        assert conn.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [
            (MASTER, "t")
        ]
        with pytest.raises(PostgresError) as raised:
            conn.execute("SELECT * FROM no_such_table")
        assert raised.value.sqlstate == "42P01"
        assert conn.execute("SELECT 1") == [("1",)]  # the session survives an error
    wrong = Endpoint(postgres.host, postgres.port, database, MASTER, "wrong")
    with pytest.raises(PostgresError) as raised:
        Connection(wrong)
    assert raised.value.sqlstate == "28P01"


WITNESS = {"table": "fleet_failover.heartbeat", "writer": "fleet_heartbeat", "reader": "fleet_prober"}


def test_a_global_database_gets_the_failover_heartbeat_and_two_roles_with_only_their_privileges(
    postgres, database
):
    with_witness = {**event(postgres, database), "witness": WITNESS}
    outcome = bootstrap(with_witness)
    assert outcome["witness"] == WITNESS
    assert bootstrap(with_witness)["created"] is False  # again: the same end state
    assert postgres.psql("SELECT count(*) FROM fleet_failover.heartbeat", database=database) == "1"
    for role in ("fleet_heartbeat", "fleet_prober"):
        # IAM database authentication on RDS (rds_iam), no password at all.
        assert postgres.psql(f"SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = '{role}'") == "t"
        assert postgres.psql(f"SELECT pg_has_role('{role}', 'rds_iam', 'MEMBER')") == "t"
        postgres.psql(f"ALTER ROLE {role} PASSWORD 'stands-in-for-a-token'")  # to log in here
    as_writer = {"user": "fleet_heartbeat", "password": "stands-in-for-a-token", "database": database}
    as_reader = {**as_writer, "user": "fleet_prober"}
    postgres.psql(
        "UPDATE fleet_failover.heartbeat SET seq = seq + 1, beat_at = clock_timestamp() WHERE id = 1",
        **as_writer,
    )
    assert postgres.psql("SELECT seq FROM fleet_failover.heartbeat", **as_reader) == "1"
    for sql, who in (
        ("INSERT INTO fleet_failover.heartbeat (id) VALUES (2)", as_writer),
        ("DELETE FROM fleet_failover.heartbeat", as_writer),
        ('SELECT * FROM "LiteLLM_VerificationToken"', as_writer),
        ("UPDATE fleet_failover.heartbeat SET seq = 0", as_reader),
        ('SELECT * FROM "LiteLLM_VerificationToken"', as_reader),
    ):
        with pytest.raises(RuntimeError, match="permission denied"):
            postgres.psql(sql, **who)
    # Its statements never wait long: a held commit ends the beat, not the function.
    assert postgres.psql("SHOW statement_timeout", **as_writer) == "5s"


def test_the_witness_takes_no_odd_names(postgres, database):
    for witness, message in (
        ({**WITNESS, "table": "heartbeat"}, "plain lower-case schema.table"),
        ({**WITNESS, "writer": MASTER}, "cannot be a witness role"),
        ({**WITNESS, "reader": "litellm_gateway"}, "cannot be a witness role"),
    ):
        with pytest.raises(ValueError, match=message):
            bootstrap({**event(postgres, database), "witness": witness})
