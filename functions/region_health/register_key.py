"""The region-health sidecar's gateway key: registered in LiteLLM's own key table, through the writer, each
time a gateway task starts (a container that runs to completion before the sidecar starts).

Why a virtual key of its own, and why this way:
- the sidecar must authenticate as a client does, so that "can serve" covers the key check against the
  region's own reader: the master key skips that check (and would give the sidecar admin power);
- it opens nothing: no route without authentication, no `allow_requests_on_db_unavailable`. The key may
  call only the deployments the sidecar probes (LiteLLM refuses it any model group), and it lives only in
  the task's secret, derived from the master key per region (components/control_plane/region_health.py);
- it is written where LiteLLM writes keys (`LiteLLM_VerificationToken`, the token being the key's SHA-256
  as LiteLLM hashes it), by this upsert rather than `/key/generate`, which would need the gateway up and
  the master key in a second container. Every region reads it back from its own replica, so a standby task
  that starts while the writer is gone still finds its key (and this run just fails: it is not essential).

Runs in the gateway's image with its generated Prisma client (LiteLLM's own), which reads DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from .settings import REGION_HEALTH_KEY_ENV, RegionHealthSettings

# `models` is given as a JSON array (a text parameter every client passes the same way).
UPSERT = """
INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, models, metadata, blocked)
VALUES ($1, $2, $3, ARRAY(SELECT jsonb_array_elements_text($4::jsonb)), $5::jsonb, FALSE)
ON CONFLICT (token) DO UPDATE SET
  key_name = EXCLUDED.key_name, key_alias = EXCLUDED.key_alias, models = EXCLUDED.models,
  metadata = EXCLUDED.metadata, blocked = FALSE, updated_at = now()
"""
# A key derived from an older master key: no longer this region's.
RETIRE = """DELETE FROM "LiteLLM_VerificationToken" WHERE key_alias = $1 AND token <> $2"""


def token(key: str) -> str:
    """What LiteLLM stores for a key (litellm.proxy._types.hash_token)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_row(settings: RegionHealthSettings, key: str) -> tuple[str, str, str, str, str]:
    """The upsert's parameters: token, key name (as LiteLLM abbreviates it), alias, models, metadata."""
    models = [p.deployment for p in settings.probes]
    metadata = {"purpose": "fleet region health: one-token completions through these deployments"}
    return token(key), f"sk-...{key[-4:]}", settings.key_alias, json.dumps(models), json.dumps(metadata)


async def register(env: Mapping[str, str]) -> dict[str, Any]:
    settings = RegionHealthSettings.from_env(env)
    key = env[REGION_HEALTH_KEY_ENV]
    prisma = importlib.import_module("prisma")  # the image's generated client
    db = prisma.Prisma()
    await db.connect()
    try:
        row = key_row(settings, key)
        await db.execute_raw(UPSERT, *row)
        await db.execute_raw(RETIRE, settings.key_alias, row[0])
    finally:
        await db.disconnect()
    return {"regionHealthKey": "registered", "alias": settings.key_alias, "models": len(settings.probes)}


def main(env: Mapping[str, str] = os.environ) -> None:
    try:
        print(json.dumps(asyncio.run(register(env))), flush=True)
    except Exception as failed:  # the writer may be gone: the key registered before still serves
        print(json.dumps({"regionHealthKey": "not registered", "error": str(failed)[:500]}), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
