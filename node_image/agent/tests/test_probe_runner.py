"""The probe runner's own life: stopping it ends every probe loop, whatever else happens in that turn of
the event loop."""

from __future__ import annotations

import asyncio

from fleet_agent.probes import Probe, ProbeRunner
from fleet_agent.state import Check


class Idle(Probe):
    """A probe that records nothing and waits a long period (or a kick) between runs."""

    check = Check.ENGINE

    def __init__(self) -> None:  # no agent: the runner needs only check, period and run
        self.runs = 0

    @property
    def period(self) -> float:
        return 60.0

    async def run(self) -> None:
        self.runs += 1


def test_a_kick_in_the_same_turn_as_stop_does_not_keep_the_probe_running() -> None:
    """What a job's SIGTERM during the engine's start does: the new engine kicks its probe as the agent
    stops the probes. With Python 3.11's asyncio.wait_for the kicked wait returned and swallowed the
    cancellation; the probe looped on and stop(), hence the agent's close, never returned."""

    async def scenario() -> int:
        probe = Idle()
        runner = ProbeRunner([probe])
        runner.start()
        while probe.runs == 0:
            await asyncio.sleep(0)
        for _ in range(3):  # into its wait for the period or a kick
            await asyncio.sleep(0)
        runner.kick(Check.ENGINE)
        async with asyncio.timeout(10):
            await runner.stop()
        return probe.runs

    assert asyncio.run(scenario()) == 1
