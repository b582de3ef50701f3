"""The state machine's rules and the GPU health rules, without processes."""

from __future__ import annotations

import asyncio
import dataclasses

from fleet_agent.config import GpuConfig
from fleet_agent.gpu.health import GpuMonitor, assess
from fleet_agent.state import Check, CheckBoard, State, StateMachine, Transition

from .agent_testkit.fake_gpu import FakeGpuBackend, healthy_reading
from .agent_testkit.net import wait_for

ALL = [Check.ENGINE, Check.MODEL, Check.CANARY, Check.GPU, Check.PROGRESS]


def machine() -> tuple[CheckBoard, StateMachine, list[Transition]]:
    board = CheckBoard(ALL)
    seen: list[Transition] = []
    return board, StateMachine(board, on_change=seen.append), seen


def pass_all(board: CheckBoard) -> None:
    for check in ALL:
        board.set(check, True, "ok")


def test_starting_warming_ready_degraded_and_back() -> None:
    board, state, seen = machine()
    assert state.evaluate() is State.STARTING and not state.ready
    board.set(Check.ENGINE, True, "healthy")
    assert state.evaluate() is State.WARMING
    assert "model: not checked yet" in state.reasons
    pass_all(board)
    assert state.evaluate() is State.READY and state.ready and state.started
    board.set(Check.ENGINE, False, "killed by SIGKILL")
    assert state.evaluate() is State.DEGRADED  # once started, never back to starting
    assert state.reasons == ["engine: killed by SIGKILL"]
    pass_all(board)
    assert state.evaluate() is State.READY
    assert [(t.old, t.new) for t in seen] == [
        (State.STARTING, State.WARMING),
        (State.WARMING, State.READY),
        (State.READY, State.DEGRADED),
        (State.DEGRADED, State.READY),
    ]


def test_draining_and_stopped_are_one_way() -> None:
    board, state, _ = machine()
    pass_all(board)
    state.evaluate()
    state.drain("signal: SIGTERM")
    assert state.state is State.DRAINING and not state.ready
    pass_all(board)
    assert state.evaluate() is State.DRAINING  # passing checks do not bring readiness back
    state.stop("drained")
    assert state.evaluate() is State.STOPPED
    state.drain("again")
    assert state.state is State.STOPPED


def test_gpu_rules() -> None:
    config = GpuConfig(count=2, temperature_margin_c=3)
    good = healthy_reading(0)
    assert assess([good, healthy_reading(1)], config) == []
    assert assess([good], config) == ["expected 2 GPU(s), found 1"]
    bad = dataclasses.replace(
        healthy_reading(1),
        temperature_c=88,
        ecc_uncorrected_volatile=2,
        remap_pending=True,
        throttle_reasons=0x40 | 0x20 | 0x04,  # hw thermal + sw thermal + an applications-clock setting
    )
    assert assess([good, bad], config) == [
        "GPU 1: 88 C at or above its slowdown threshold 90 C (margin 3 C)",
        "GPU 1: 2 uncorrected ECC error(s)",
        "GPU 1: row remap pending; the GPU needs a reset",
        "GPU 1: hardware throttling (hw_thermal)",
    ]
    failed = dataclasses.replace(good, remap_failed=True, remap_pending=True, slowdown_temperature_c=None)
    assert assess([failed, healthy_reading(1)], config) == [
        "GPU 0: row remapping failed; the board needs replacing"
    ]
    # Boards without ECC or remapping report None: no finding.
    unsupported = dataclasses.replace(
        good, ecc_uncorrected_volatile=None, remap_pending=None, remap_failed=None
    )
    assert assess([unsupported, healthy_reading(1)], config) == []


def test_monitor_condemns_on_critical_xid_only() -> None:
    backend = FakeGpuBackend()
    changes: list[int] = []

    async def scenario() -> list[str]:
        monitor = GpuMonitor(backend, GpuConfig(), on_change=lambda: changes.append(1))
        assert await monitor.check() == []
        assert backend.registered
        backend.replay_xid(31)  # application fault
        backend.replay_xid(79)
        await asyncio.to_thread(wait_for, lambda: changes, 5, "the XID thread to report")
        backend.change(0, temperature_c=20)  # a fine reading does not clear a condemned GPU
        problems = await monitor.check()
        assert [event.xid for event in monitor.xid_events] == [31, 79]
        monitor.close()
        return problems

    assert asyncio.run(scenario()) == ["GPU 0: XID 79 (GPU has fallen off the bus)"]
    assert changes == [1]  # only the critical one changed the verdict
    assert backend.closed


def test_monitor_reports_nvml_missing_and_recovers_when_it_appears() -> None:
    backend = FakeGpuBackend(unavailable="NVML Shared Library Not Found")

    async def scenario() -> tuple[list[str], list[str]]:
        monitor = GpuMonitor(backend, GpuConfig(), on_change=lambda: None)
        missing = await monitor.check()
        backend.unavailable = None  # the driver finished loading
        present = await monitor.check()
        monitor.close()
        return missing, present

    assert asyncio.run(scenario()) == (["NVML unavailable: NVML Shared Library Not Found"], [])
