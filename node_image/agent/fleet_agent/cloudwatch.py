"""The node's metrics to CloudWatch: one batched PutMetricData per publishing period, from the agent itself.

Why PutMetricData from the agent and not the embedded metric format through the CloudWatch agent: the
scaling policies act on these figures, so their delay must be one we set and can state. A PutMetricData
datapoint is the agent's own period old (10 s) when it is sent; EMF goes through the CloudWatch agent's
buffer and CloudWatch Logs' metric extraction, a delay AWS does not publish. Cost is a wash beside a GPU:
the custom metrics are the same either way (per metric name and dimension set, not per node: nodes share
Pool and Model), and one request per node per 10 s is about 0.26 M requests a node-month (US$2.59 at
US$0.01 per 1,000 API requests, a third-party figure, before the free million), against US$0.50/GB
ingested for EMF's log events (third-party too) plus a second daemon, its config and its log group on
every image. Either is under 0.3 % of a g6e.xlarge's on-demand month. botocore gzips larger bodies itself.

Windows CloudWatch refuses or cannot take (throttling, no network) are kept for the next period, at most
`constants.CLOUDWATCH_PENDING_WINDOWS` of them; older ones are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from fleet_agent import constants as c
from fleet_agent import fleet_metrics as fm
from fleet_agent.aws import aws_client
from fleet_agent.config import CloudWatchConfig
from fleet_agent.imds import ImdsSession
from fleet_agent.metrics import Counter, Registry
from fleet_agent.node_metrics import NodeMetrics, Window, batches

log = logging.getLogger("fleet_agent.cloudwatch")

# After a window ends, the publisher waits this long before taking it: the sampler's reading of the
# window's last second is in by then.
SETTLE_S = 0.25


class CloudWatchPublisher:
    def __init__(
        self,
        config: CloudWatchConfig,
        metrics: NodeMetrics,
        imds: ImdsSession,
        registry: Registry,
        *,
        timeout_s: float = c.HOOK_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.imds = imds
        self.timeout_s = timeout_s
        self.pending: deque[Window] = deque()
        self.published_windows = 0
        self._client: Any = None
        self._failing = False
        self.puts = registry.add(
            Counter("fleet_agent_cloudwatch_puts_total", "PutMetricData calls, by result", ["result"])
        )
        self.dropped = registry.add(
            Counter("fleet_agent_cloudwatch_dropped_windows_total", "Metric windows never published")
        )

    async def run(self) -> None:
        period = self.config.period_s
        while True:
            now = time.time()
            await asyncio.sleep(period - now % period + SETTLE_S)
            await self.publish(time.time())

    async def publish(self, now: float) -> bool:
        """Send every window that ended by `now` (and those still pending); True when all went."""
        self.pending.extend(self.metrics.take_finished(now))
        while len(self.pending) > c.CLOUDWATCH_PENDING_WINDOWS:
            self.pending.popleft()
            self.dropped.inc()
        while self.pending:
            # Taken off first: a put cancelled midway (the agent stopping) may have landed, and a window sent
            # twice would count its requests twice.
            window = self.pending.popleft()
            try:
                await self._put(self.metrics.datums(window))
            except (ClientError, BotoCoreError, httpx.HTTPError, OSError) as exc:
                self.pending.appendleft(window)
                self.puts.inc(("failed",))
                if not self._failing:  # one line a failure streak, not one a period
                    log.warning("PutMetricData failed (%s); keeping %d window(s)", exc, len(self.pending))
                self._failing = True
                return False
            self.published_windows += 1
        if self._failing:
            log.info("PutMetricData works again")
        self._failing = False
        return True

    async def flush(self) -> None:
        """At exit: everything, the window still open included; one try, and none while CloudWatch has been
        failing (a put cannot be cancelled, and the process waits for it before it exits)."""
        if not self._failing:
            await self.publish(float("inf"))

    async def _put(self, datums: list[dict[str, Any]]) -> None:
        if not datums:
            return
        client = await self._cloudwatch()
        for batch in batches(datums):
            await asyncio.to_thread(client.put_metric_data, Namespace=fm.NODE_NAMESPACE, MetricData=batch)
            self.puts.inc(("ok",))

    async def _cloudwatch(self) -> Any:
        if self._client is None:
            region = self.config.region or (await self.imds.identity()).region
            # One attempt a put: a window that fails waits for the next period (the pending queue), and a
            # put at exit is bounded by one timeout.
            self._client = await asyncio.to_thread(
                aws_client, "cloudwatch", region, self.imds.base, self.timeout_s, 1
            )
        return self._client
