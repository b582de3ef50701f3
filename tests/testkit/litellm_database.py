"""LiteLLM's own database on a real PostgreSQL (testkit/postgres.py): its schema as its migrations build it
(the `litellm_proxy_extras` package LiteLLM runs them from), and virtual keys written where LiteLLM keeps
them, so a test can stand a real server in for a region's reader."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import litellm_proxy_extras

from testkit.postgres import SUPERUSER, Postgres

DATABASE = "litellm"
MIGRATIONS = Path(litellm_proxy_extras.__file__).resolve().parent / "migrations"


def create_litellm_database(server: Postgres) -> str:
    """The `litellm` database with every migration applied, in order; its URL (as the superuser)."""
    server.psql(f"CREATE DATABASE {DATABASE}")
    with tempfile.TemporaryDirectory(prefix="litellm-schema-") as tmp:
        script = Path(tmp) / "migrations.sql"
        script.write_text("\n".join(m.read_text() for m in sorted(MIGRATIONS.glob("*/migration.sql"))))
        os.chmod(tmp, 0o755)  # the server's own account reads it where psql runs as root
        script.chmod(0o644)
        server.psql_file(script, database=DATABASE)
    return server.url(SUPERUSER, server.superuser_password, DATABASE)


def add_key(server: Postgres, key: str, alias: str, models: list[str] | None = None) -> None:
    """A virtual key as `/key/generate` stores it: the SHA-256 of the key, its models (none: all)."""
    token = hashlib.sha256(key.encode()).hexdigest()
    listed = ", ".join(f"'{m}'" for m in models or [])
    server.psql(
        'INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, models) '
        f"VALUES ('{token}', 'sk-...{key[-4:]}', '{alias}', ARRAY[{listed}]::text[])",
        database=DATABASE,
    )


def key_models(server: Postgres, alias: str) -> list[str]:
    """The models of the key with `alias` (one row a key)."""
    out = server.psql(
        f"""SELECT array_to_string(models, ',') FROM "LiteLLM_VerificationToken" WHERE key_alias = '{alias}'""",
        database=DATABASE,
    )
    return out.split(",") if out else []
