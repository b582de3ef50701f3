"""Cloud Tasks' retry schedule from a queue's RetryConfig (queue.proto), and the give-up budget from it."""

from __future__ import annotations

import itertools

from components.batch.retry import RetryPolicy

from .gcp_fakes import Queue, retry_delay_s


def policy(**fields: int) -> RetryPolicy:
    base = {
        "max_attempts": 5,
        "min_backoff_s": 10,
        "max_backoff_s": 300,
        "max_doublings": 3,
        "max_retry_duration_s": 0,
    }
    return RetryPolicy(**{**base, **fields})


def test_schedule_is_queue_protos_example() -> None:
    # "min_backoff 10s, max_backoff 300s, max_doublings 3: retried at 10s, 20s, 40s, 80s, 160s, 240s, 300s, ..."
    assert [policy().backoff_s(r) for r in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_give_up_counts_every_attempt_at_its_deadline_and_every_backoff() -> None:
    assert policy().give_up_after_s(dispatch_deadline_s=30) == 5 * 30 + (10 + 20 + 40 + 80)
    assert policy(max_attempts=1).give_up_after_s(dispatch_deadline_s=30) == 30


def test_retry_duration_keeps_retrying_past_max_attempts_until_it_has_passed() -> None:
    # Both limits must be reached: 2 attempts, but retried until 100 s have passed since the first.
    long = policy(max_attempts=2, max_retry_duration_s=100)
    assert long.attempts_until_give_up() == 5  # retries start at 10, 30, 70, 150 s
    assert policy(max_attempts=2).attempts_until_give_up() == 2


def test_the_fake_dispatcher_follows_the_same_schedule() -> None:
    """Two readings of queue.proto, one in the program's budget and one in the fake: they agree."""
    for min_b, max_b, doublings in itertools.product((1, 5, 10), (10, 60, 300), (0, 2, 3, 16)):
        if min_b > max_b:
            continue
        queue = Queue("q", 1, 1, 5, min_b, max_b, doublings, 0, "POST", {}, "sa", {}, set(), set())
        budget = policy(min_backoff_s=min_b, max_backoff_s=max_b, max_doublings=doublings)
        assert [retry_delay_s(queue, r) for r in range(1, 12)] == [budget.backoff_s(r) for r in range(1, 12)]
