"""The one base URL, emulated as the rendered Route53 records behave.

The sandbox cannot hand clients a DNS name, so its front is a TCP port whose every new connection is
"resolved" the way a client behind a caching resolver sees `api.<domain>`, then spliced to the answer:

- failover pair (a PRIMARY and a SECONDARY record, each on its region's health check): one checker per
  rendered checker region probes the region's `/fleet/region-health` every `requestInterval` (each
  checker starting at its own offset within the first interval: they are not synchronized), with the
  probe timeout Route53 documents (4 s to connect, 2 s to answer); a checker changes its verdict after
  `failureThreshold` consecutive results the other way; the health check is healthy while more than 18 %
  of the checkers say so, as Route53 counts them, and that verdict is aggregated once per interval (the
  "aggregation" term of the plan's DNS budget); the answer is the primary while its check is healthy,
  else the secondary (the primary again when both fail, as Route53 answers);
- a resolver holds an answer for the record's TTL: the answer changes for new connections only once the
  cached one expires; connections already open stay where they are (as clients keep theirs);
- one alias record (a stack without a standby): the one region, always.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from fleet.sandbox.events import Events
from fleet.sandbox.plan import DnsHealthCheck, DnsSpec

# Route53's HTTP(S) health checks: 4 s to connect, 2 s for the first bytes (the plan's probeTimeout).
PROBE_CONNECT_S, PROBE_READ_S = 4.0, 2.0
HEALTHY_SHARE = 0.18  # Route53 calls an endpoint healthy when more than 18 % of checkers do


@dataclass
class Checker:
    region: str  # where the checker runs
    healthy: bool = True  # Route53 starts a new check healthy
    streak: int = 0  # consecutive results disagreeing with `healthy`
    last: str = ""


@dataclass
class HealthCheckState:
    spec: DnsHealthCheck
    url: str
    checkers: list[Checker] = field(default_factory=list)
    healthy: bool = True
    changed_at: float = 0.0


class Route53Front:
    def __init__(
        self,
        spec: DnsSpec,
        gateways: Mapping[str, tuple[str, int]],
        health_urls: Mapping[str, str],
        events: Events,
    ) -> None:
        self.spec = spec
        self.gateways = dict(gateways)
        self.events = events
        self.checks = {
            region: HealthCheckState(check, health_urls[region], [Checker(r) for r in check.checker_regions])
            for region, check in spec.health_checks.items()
        }
        self._cached: tuple[str, float] | None = None  # (region, expires at)
        self.answer = spec.regions[0]
        self.connections = 0
        self.refused = 0

    # --- Route53 ------------------------------------------------------------------------------------
    def _route(self) -> str:
        if not self.spec.failover:
            return self.spec.regions[0]
        primary, *others = self.spec.regions
        if self.checks[primary].healthy:
            return primary
        return next((r for r in others if self.checks[r].healthy), primary)

    def resolve(self) -> str:
        """What a client's resolver answers now: the cached record until its TTL runs out."""
        now = time.monotonic()
        if self._cached is None or now >= self._cached[1]:
            region = self._route()
            self._cached = (region, now + self.spec.ttl_s)
            if region != self.answer:
                self.events.add("dns-answer", record=self.spec.name, region=region, previous=self.answer)
                self.answer = region
        return self._cached[0]

    async def _checker(self, state: HealthCheckState, checker: Checker, client: httpx.AsyncClient) -> None:
        interval = state.spec.interval_s
        await asyncio.sleep(random.uniform(0, interval))  # checkers are not synchronized
        while True:
            try:
                answer = await client.get(state.url)
                passed = 200 <= answer.status_code < 300
                checker.last = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                passed, checker.last = False, type(exc).__name__
            checker.streak = checker.streak + 1 if passed != checker.healthy else 0
            if checker.streak >= state.spec.failure_threshold:
                checker.healthy, checker.streak = passed, 0
            await asyncio.sleep(interval)

    async def _aggregate(self, region: str, state: HealthCheckState) -> None:
        while True:
            await asyncio.sleep(state.spec.interval_s)
            share = sum(c.healthy for c in state.checkers) / max(1, len(state.checkers))
            healthy = share > HEALTHY_SHARE
            if healthy != state.healthy:
                state.healthy, state.changed_at = healthy, time.time()
                self.events.add(
                    "dns-health", region=region, healthy=healthy, checkers=self.checker_view(region)
                )

    def checker_view(self, region: str) -> dict[str, str]:
        return {
            c.region: ("healthy" if c.healthy else "failing") + f" ({c.last})"
            for c in self.checks[region].checkers
        }

    # --- the clients' side --------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        region = self.resolve()
        host, port = self.gateways[region]
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError):
            self.refused += 1  # the address answers nothing: the client's connect fails
            writer.transport.abort()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def serve(self, port: int, on_ready: Callable[[], None] | None = None) -> None:
        timeout = httpx.Timeout(PROBE_READ_S, connect=PROBE_CONNECT_S)
        async with httpx.AsyncClient(timeout=timeout) as client:
            tasks = [
                asyncio.ensure_future(self._checker(state, checker, client))
                for state in self.checks.values()
                for checker in state.checkers
            ]
            tasks += [asyncio.ensure_future(self._aggregate(r, s)) for r, s in self.checks.items()]
            server = await asyncio.start_server(self._connection, "127.0.0.1", port)
            if on_ready is not None:
                on_ready()
            try:
                async with server:
                    await server.serve_forever()
            finally:
                for task in tasks:
                    task.cancel()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            # A peer that went away mid-answer: the other side is cut too, not ended cleanly.
            if reader.at_eof():
                writer.close()
            else:
                writer.transport.abort()
