"""What a standby's cold key cache costs: the real LiteLLM proxy, its global writer out of reach and its
region's reader (a real PostgreSQL with LiteLLM's schema) answering, as the standby runs after a region
loss. Each of `--keys` virtual keys sends one request (cold: LiteLLM looks the key up in the reader) and
then a second (warm: its in-memory key cache, 60 s by default, per worker process).

    uv run python bench/gateway_keys.py [--keys 40] [--starts 2]

Also times LiteLLM's own start (process start to `/health/liveliness` 200, `--starts` times): the part of
a gateway task's start that is not the image pull (components/control_plane/timings.py).

The upstream is an OpenAI-compatible fake on loopback, so the figures are the gateway's own. The reader is
on loopback too: in AWS each cold lookup also pays a round trip to the region's reader endpoint (within a
region, about a millisecond; not measured here). The Prisma client is the testkit's stand-in over a real
PostgreSQL connection (PyPI's LiteLLM ships none), one connection per client. Prints a JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from testkit.fake_openai import FakeOpenAI  # noqa: E402
from testkit.litellm_database import DATABASE, add_key, create_litellm_database  # noqa: E402
from testkit.litellm_proxy import running_litellm  # noqa: E402
from testkit.postgres import running_postgres  # noqa: E402

from node_image.agent.tests.agent_testkit.net import free_port, serving  # noqa: E402

MASTER_KEY = "sk-bench-master-key-0123456789"
UPSTREAM_KEY = "sk-bench-upstream"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(client: httpx.Client, url: str, key: str) -> float:
    started = time.perf_counter()
    answer = client.post(
        url,
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
    )
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
    return elapsed


def table_scans(server) -> int:  # type: ignore[no-untyped-def]
    """Table scans in LiteLLM's database so far (one joined lookup scans several tables; PostgreSQL flushes
    these statistics about once a second)."""
    out = server.psql(
        "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables",
        database=DATABASE,
    )
    return int(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--starts", type=int, default=2)
    args = parser.parse_args()

    with running_postgres() as server, serving(FakeOpenAI(UPSTREAM_KEY)) as upstream:
        reader = create_litellm_database(server)
        keys = [f"sk-bench-key-{i:04d}-0123456789" for i in range(args.keys)]
        for i, key in enumerate(keys):
            add_key(server, key, f"bench-{i}")
        config = {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/m",
                        "api_base": f"{upstream.url}/v1",
                        "api_key": UPSTREAM_KEY,
                    },
                }
            ],
            "general_settings": {
                "master_key": MASTER_KEY,
                "database_url": "os.environ/DATABASE_URL",
                "allow_requests_on_db_unavailable": False,
            },
        }
        env = {
            "DATABASE_URL": f"postgresql://x:y@127.0.0.1:{free_port()}/litellm?sslmode=require&connect_timeout=2",
            "DATABASE_URL_READ_REPLICA": reader,
            "DISABLE_SCHEMA_UPDATE": "true",
        }
        starts: list[float] = []
        cold: list[float] = []
        warm: list[float] = []
        scans_per_key: float | None = None
        for run in range(args.starts):
            started = time.monotonic()
            with running_litellm(config, env=env, database="postgres") as proxy:
                starts.append(time.monotonic() - started)
                if run:
                    continue  # later starts are timed only
                url = f"{proxy.base_url}/v1/chat/completions"
                with httpx.Client(timeout=60) as client:
                    timed(client, url, MASTER_KEY)  # the route's first call, outside the figures
                    time.sleep(2)
                    before = table_scans(server)
                    for key in keys:
                        cold.append(timed(client, url, key))
                        warm.append(timed(client, url, key))
                    time.sleep(2)
                    scans_per_key = (table_scans(server) - before) / len(keys)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50Ms": round(statistics.median(values) * 1000, 1),
            "p95Ms": round(percentile(values, 95) * 1000, 1),
            "maxMs": round(max(values) * 1000, 1),
        }

    extra = [c - w for c, w in zip(cold, warm, strict=True)]
    print(
        json.dumps(
            {
                "keys": len(cold),
                "coldFirstRequest": summary(cold),
                "warmSecondRequest": summary(warm),
                "coldCostPerKeyMs": summary(extra),
                "readerTableScansPerColdKey": scans_per_key,
                "gatewayStartSeconds": [round(s, 1) for s in starts],
                "note": "per key per worker process, once per key-cache TTL (60 s); the reader on loopback",
            }
        )
    )


if __name__ == "__main__":
    main()
