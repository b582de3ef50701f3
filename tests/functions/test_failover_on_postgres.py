"""The prober against a real database: a PostgreSQL primary (the global writer) and its streaming replica
(the standby's secondary cluster), the heartbeat written and read for real, `pg_promote` behind the RDS
API the prober calls (tests/testkit/failover_drill.py). Faults as the standby sees them: the path to the
writer blackholed while it keeps committing; the primary's gateway failing too; replication falling
behind; the writer lost. Periods scaled down (Periods); every wait is on an event (the prober's own observations
and decisions, the replica's promotion), never on the clock.

One drill, in phases, each leaving the pair as it found it until the last: a pair takes longer to start
than any phase takes to run."""

from __future__ import annotations

from testkit.failover_drill import Periods, drill

from node_image.agent.tests.agent_testkit.net import wait_for

P = Periods(rpo_seconds=2)
# Had the prober been going to promote on a fault, it would have within this much of its own observing:
# the agreement window, the heartbeat's staleness, and an interval to spare.
LONG_ENOUGH = P.promote_after_seconds + P.heartbeat_stale_seconds + P.probe_interval_seconds


def test_the_prober_on_a_real_primary_and_replica(moto_url: str):
    with drill(moto_url, P) as pair:
        prober = pair.start_prober()
        healthy = prober.watch(P.probe_interval_seconds)
        assert prober.degraded(healthy) == [0] * len(prober.degraded(healthy))

        # 1. The path to the writer blackholed (a route, NACL or security group) while it keeps
        # committing: no promotion, failover safety degraded. (The gateway failing alone is the bench's.)
        pair.path_to_writer.blackhole()
        peering_only = prober.watch(LONG_ENOUGH)
        assert pair.rds.failovers == [] and set(prober.actions()) <= {"none", "watch"}
        assert set(prober.degraded(peering_only)) == {1}, "peering-only"

        # 2. The primary's gateway failing as well, the case: the outside witnesses agree; the
        # heartbeat says the writer lives. The prober holds and tells a person, once.
        pair.route53_says("failing")
        wait_for(lambda: "hold" in prober.actions(), 120, "the prober to hold")
        prober.watch(LONG_ENOUGH)
        assert pair.rds.failovers == [] and not pair.rds.standby_writes()
        (held,) = pair.alerts()
        assert held["Subject"] == "Failover held: a person decides"
        assert "the writer is alive, its heartbeat still advances" in held["Message"]

        # 3. Replication stops reaching the standby while the writer commits and still answers (lag);
        # then every witness says "lost" (path, gateway, no heartbeat). What a failover would lose, the
        # commits since the cut, is over the RPO: the prober holds.
        pair.path_to_writer.restore()
        pair.route53_says("healthy")
        pair.replication.blackhole()
        pair.wait_prober_sees_the_writer_answer_behind(P.rpo_seconds + 1)
        pair.path_to_writer.blackhole()
        pair.route53_says("failing")
        wait_for(lambda: len(pair.alerts()) > 1, 120, "the prober to hold again")
        assert "over the 2 s RPO" in pair.alerts()[-1]["Message"], pair.alerts()[-1]["Message"]
        assert pair.rds.failovers == []

        # 4. Everything repaired, as the lag readings and the prober record it; then the writer is lost
        # (Route53 sees the gateway go a little later).
        for path in (pair.path_to_writer, pair.replication):
            path.restore()
        pair.route53_says("healthy")
        pair.wait_repaired()
        pair.lose_the_writer()
        wait_for(pair.rds.standby_writes, 120, "the replica to be promoted")
        wait_for(lambda: "promote" in prober.actions(), 60, "the prober's report")
        assert len(pair.rds.failovers) == 1
        assert pair.alerts()[-1]["Subject"] == "Failover to the standby requested"
        # What the client was told was committed and the promoted standby lacks: within the RPO.
        acknowledged, lost = pair.rows_lost()
        assert acknowledged and len(lost) < len(acknowledged)
        if lost:
            assert acknowledged[-1][1] - lost[0][1] <= P.rpo_seconds
        # The next runs see the standby as the writer: nothing more to do.
        wait_for(lambda: prober.outcomes[-1]["reason"] == "the standby is already the writer", 60, "a run")
        assert len(pair.rds.failovers) == 1
