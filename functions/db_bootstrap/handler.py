"""Give the gateway its own database role, owner of its database, so it never connects as the master user.

Invoked by Pulumi (`aws.lambda_.Invocation`) at deploy, from inside the VPC, as the master user:

1. the role exists and can log in, with the gateway's password stored as a SCRAM verifier computed here
   (the password never appears in a statement, so never in a server log);
2. the master may act for the role (PostgreSQL 16 asks that before it hands objects over);
3. the role owns the database, its public schema and what the master created in it (tables, views,
   sequences, enum types), so LiteLLM's migrations (the gateway task's `migrate` container) can create
   and alter its tables;
4. with a global database, the failover witness (functions/failover_prober/heartbeat.py): its one-row
   heartbeat table in a schema of its own (never the gateway's), a role that may update that row and a
   role that may read it, nothing else, each logging in with IAM database authentication (`rds_iam`:
   they have no password).

Every step is idempotent: running it again (a new password, a re-deploy) leaves the same end state. The
event carries secrets; nothing of it is logged or returned.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from .pgwire import Connection, Endpoint, quote_ident, quote_literal, scram_verifier
from .settings import BootstrapRequest, Witness

log = logging.getLogger("db_bootstrap")
log.setLevel(logging.INFO)

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TABLE_NAME = re.compile(r"^([a-z_][a-z0-9_]{0,62})\.([a-z_][a-z0-9_]{0,62})$")
# RDS's role for IAM database authentication: a member logs in with a token, never a password.
IAM_ROLE = "rds_iam"
# A witness answers at once or not at all: nothing of it may wait on a lock or a held commit for long.
WITNESS_STATEMENT_TIMEOUT = "5s"
_HAND_OVER = """
DO $$
DECLARE
  me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
  obj record;
BEGIN
  FOR obj IN
    SELECT c.relname AS name,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = me
      AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      -- a sequence owned by a column moves with its table
      AND NOT (c.relkind = 'S' AND EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    ORDER BY c.relkind DESC
  LOOP
    EXECUTE format('ALTER %s public.%I OWNER TO %I', obj.kind, obj.name, {role});
  END LOOP;
  FOR obj IN
    SELECT t.typname AS name FROM pg_type t
    WHERE t.typnamespace = 'public'::regnamespace AND t.typowner = me AND t.typtype = 'e'
  LOOP
    EXECUTE format('ALTER TYPE public.%I OWNER TO %I', obj.name, {role});
  END LOOP;
END $$
"""


def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    del context
    return bootstrap(event)


def bootstrap(event: Mapping[str, Any], cafile: str | None = None) -> dict[str, Any]:
    request = BootstrapRequest.from_event(event)
    role, database, master = request.gateway_user, request.database, request.master_user
    for name in (role, database, master):
        if not ROLE_NAME.match(name):
            raise ValueError(f"{name!r} is not a plain lower-case identifier")
    if role == master:
        raise ValueError("the gateway's role must not be the master user")
    endpoint = Endpoint(
        host=request.host, port=request.port, database=database, user=master, password=request.master_password
    )
    r, db = quote_ident(role), quote_ident(database)
    verifier = quote_literal(scram_verifier(request.gateway_password))
    with Connection(endpoint, cafile=cafile) as conn:
        exists = conn.execute(f"SELECT 1 FROM pg_roles WHERE rolname = {quote_literal(role)}")
        if not exists:
            conn.execute(f"CREATE ROLE {r} LOGIN")
        conn.execute(f"ALTER ROLE {r} WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD {verifier}")
        member = conn.execute(
            f"SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            f"WHERE g.rolname = {quote_literal(role)} AND m.member = (SELECT oid FROM pg_roles "
            "WHERE rolname = current_user)"
        )
        if not member:
            conn.execute(f"GRANT {r} TO CURRENT_USER")
        conn.execute(f"ALTER DATABASE {db} OWNER TO {r}")
        conn.execute(f"ALTER SCHEMA public OWNER TO {r}")
        # What an earlier gateway created as the master user moves to the gateway's role: this database's
        # tables, views, standalone sequences and enum types (not REASSIGN OWNED, which would also hand
        # over any other database the master owns).
        conn.execute(_HAND_OVER.replace("{role}", quote_literal(role)))
        (owner,) = conn.execute(
            f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {quote_literal(database)}"
        )
        if request.witness is not None:
            _witness(conn, request.witness, forbidden=(role, master))
    outcome: dict[str, Any] = {
        "role": role,
        "database": database,
        "databaseOwner": owner[0],
        "created": not exists,
    }
    if request.witness is not None:
        outcome["witness"] = request.witness.to_event()
    log.info(json.dumps(outcome))
    return outcome


def _witness(conn: Connection, witness: Witness, forbidden: tuple[str, ...]) -> None:
    """The heartbeat table, its row, and its two roles with exactly their privileges (idempotent)."""
    found = TABLE_NAME.match(witness.table)
    if found is None:
        raise ValueError(f"{witness.table!r} is not a plain lower-case schema.table")
    for name in (witness.writer, witness.reader):
        if not ROLE_NAME.match(name) or name in forbidden:
            raise ValueError(f"{name!r} cannot be a witness role (a plain lower-case identifier of its own)")
    schema, table = (
        quote_ident(found.group(1)),
        f"{quote_ident(found.group(1))}.{quote_ident(found.group(2))}",
    )
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY CHECK (id = 1), "
        "seq bigint NOT NULL DEFAULT 0, beat_at timestamptz NOT NULL DEFAULT clock_timestamp(), region text)"
    )
    conn.execute(f"INSERT INTO {table} (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
    for name in (witness.writer, witness.reader):
        r = quote_ident(name)
        if not conn.execute(f"SELECT 1 FROM pg_roles WHERE rolname = {quote_literal(name)}"):
            conn.execute(f"CREATE ROLE {r} LOGIN")
        conn.execute(f"ALTER ROLE {r} WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD NULL")
        conn.execute(f"ALTER ROLE {r} SET statement_timeout = {quote_literal(WITNESS_STATEMENT_TIMEOUT)}")
        conn.execute(f"GRANT {IAM_ROLE} TO {r}")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {r}")
    # Updating `seq = seq + 1` reads the row: the writer needs SELECT as well.
    conn.execute(f"GRANT SELECT, UPDATE ON {table} TO {quote_ident(witness.writer)}")
    conn.execute(f"GRANT SELECT ON {table} TO {quote_ident(witness.reader)}")
