"""The failover prober on a real PostgreSQL pair (tests/testkit/failover_drill.py): a primary standing in for
the global writer, its streaming replica for the standby's secondary cluster, the heartbeat written and
read for real, `pg_promote` behind the RDS API the prober calls, a client committing a row every 20 ms.

- writer loss (`--trials` fresh pairs): the primary stopped at once, Route53's verdict turning "failing"
  `route53_detection_seconds` later; seconds from the loss until the replica takes writes, and the rows the
  client was told were committed that the promoted replica lacks (and the time they span, against
  `rpoSeconds`);
- faults that leave the writer alive (one pair, `--episodes` rounds): the path to the writer blackholed
  (peering-only), Route53 failing alone (gateway-only), both at once, and replication cut past the RPO
  followed by every witness saying "lost"; each held long enough for a promotion to happen had the prober
  been going to make one. False promotions over them: the goal is 0. Holds and alerts are counted too.

    uv run python bench/failover.py [--trials 3] [--episodes 2]

Periods are the drill's (scaled down from the deployed 10 s probes, 60 s agreement, 5 s beats, 30 s
staleness; printed with the figures). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from testkit.failover_drill import Drill, Periods, drill  # noqa: E402
from testkit.moto_server import running_moto  # noqa: E402

from node_image.agent.tests.agent_testkit.net import wait_for  # noqa: E402

PERIODS = Periods(rpo_seconds=2)
# Each fault is held for the agreement window, the heartbeat's staleness and Route53's delay, twice over.
HOLD_FAULT_SECONDS = 2 * (
    PERIODS.promote_after_seconds + PERIODS.heartbeat_stale_seconds + PERIODS.route53_detection_seconds
)


def writer_loss(url: str) -> dict[str, float | int]:
    with drill(url, PERIODS) as pair:
        prober = pair.start_prober()
        prober.watch(PERIODS.probe_interval_seconds)
        lost_at = pair.lose_the_writer()
        wait_for(pair.rds.standby_writes, 300, "the promotion")
        promoted_s = time.monotonic() - lost_at
        failover_call_s = pair.rds.failovers[0] - lost_at
        acknowledged, lost = pair.rows_lost()
        window = acknowledged[-1][1] - lost[0][1] if lost else 0.0
        return {
            "secondsToPromote": round(promoted_s, 2),
            "secondsToFailoverCall": round(failover_call_s, 2),
            "rowsAcknowledged": len(acknowledged),
            "rowsLost": len(lost),
            "lostWindowSeconds": round(window, 3),
            "failoverCalls": len(pair.rds.failovers),
        }


def hold(pair: Drill, seconds: float) -> None:
    """Keep the current fault for `seconds` of the prober's own observing."""
    pair.prober.watch(seconds)


def repair(pair: Drill) -> None:
    pair.path_to_writer.restore()
    pair.replication.restore()
    pair.route53_says("healthy")
    pair.wait_repaired()


def faults_with_the_writer_alive(url: str, episodes: int) -> dict[str, object]:
    counts = {"peeringOnly": 0, "gatewayOnly": 0, "peeringAndGateway": 0, "replicationCutThenAllLost": 0}
    with drill(url, PERIODS) as pair:
        prober = pair.start_prober()
        hold(pair, PERIODS.probe_interval_seconds)
        observed_s = 0.0
        started = time.monotonic()
        for _ in range(episodes):
            pair.path_to_writer.blackhole()
            hold(pair, HOLD_FAULT_SECONDS)
            counts["peeringOnly"] += 1
            repair(pair)
            pair.route53_says("failing")
            hold(pair, HOLD_FAULT_SECONDS)
            counts["gatewayOnly"] += 1
            repair(pair)
            pair.path_to_writer.blackhole()
            pair.route53_says("failing")
            hold(pair, HOLD_FAULT_SECONDS)
            counts["peeringAndGateway"] += 1
            repair(pair)
            pair.replication.blackhole()
            pair.wait_prober_sees_the_writer_answer_behind(PERIODS.rpo_seconds + 1)
            pair.path_to_writer.blackhole()
            pair.route53_says("failing")
            hold(pair, HOLD_FAULT_SECONDS)
            counts["replicationCutThenAllLost"] += 1
            repair(pair)
        observed_s = time.monotonic() - started
        alerts = pair.alerts()
        return {
            "episodes": counts,
            "observedSeconds": round(observed_s, 1),
            "observations": len(prober.seen),
            "falsePromotions": len(pair.rds.failovers),
            "holds": sum(1 for o in prober.outcomes if o["action"] == "hold"),
            "alerts": len(alerts),
            "degradedObservations": sum(prober.degraded()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="writer losses, each on a fresh pair")
    parser.add_argument("--episodes", type=int, default=2, help="rounds of the faults that spare the writer")
    args = parser.parse_args()
    with running_moto() as url:
        losses = [writer_loss(url) for _ in range(args.trials)]
        spared = faults_with_the_writer_alive(url, args.episodes)
    promote = [t["secondsToPromote"] for t in losses]
    print(
        json.dumps(
            {
                "periods": asdict(PERIODS),
                "writerLoss": {
                    "trials": losses,
                    "secondsToPromoteMedian": round(statistics.median(promote), 2),
                    "secondsToPromoteMax": round(max(promote), 2),
                    "rowsAcknowledged": sum(int(t["rowsAcknowledged"]) for t in losses),
                    "rowsLost": sum(int(t["rowsLost"]) for t in losses),
                    "lostWindowSecondsMax": max(float(t["lostWindowSeconds"]) for t in losses),
                    "rpoSeconds": PERIODS.rpo_seconds,
                    "failoverCallsPerLoss": sorted({int(t["failoverCalls"]) for t in losses}),
                },
                "writerAlive": spared,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
