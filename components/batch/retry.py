"""Cloud Tasks' retry schedule for a queue's RetryConfig, as queue.proto describes it, and the worst case it
gives before a dispatch is given up.

Plain Python (no SDK): the component publishes the figure as a budget, `bench/batch.py` prints it, and the
submit client can say how long a task may wait.

The schedule (RetryConfig.max_doublings): the first retry comes `min_backoff` after a failed attempt; the
interval doubles `max_doublings` times, then grows linearly by `min_backoff * 2^max_doublings`, and is never
above `max_backoff`. Retrying stops once the task has been attempted `max_attempts` times *and*
`max_retry_duration` has passed since its first attempt (both: the later of the two wins).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """A queue's RetryConfig in seconds (Cloud Tasks truncates backoffs and durations to whole seconds)."""

    max_attempts: int
    min_backoff_s: int
    max_backoff_s: int
    max_doublings: int
    max_retry_duration_s: int  # 0: no time limit

    def backoff_s(self, retry: int) -> int:
        """The wait before retry number `retry` (1 for the first retry)."""
        if retry < 1:
            raise ValueError("retries are numbered from 1")
        base = self.min_backoff_s
        doubled = retry - 1
        if doubled <= self.max_doublings:
            interval = base * 2**doubled
        else:
            step = base * 2**self.max_doublings
            interval = step * (doubled - self.max_doublings + 1)
        return min(interval, self.max_backoff_s)

    def attempts_until_give_up(self) -> int:
        """How many attempts a task that always fails gets: max_attempts, or more while the retry
        duration has not passed (the task is dropped only once both limits are reached)."""
        attempts = self.max_attempts
        if self.max_retry_duration_s > 0:
            while self.retry_start_s(attempts) < self.max_retry_duration_s:
                attempts += 1
        return attempts

    def retry_start_s(self, attempt: int) -> int:
        """Seconds from the first attempt's end to the start of attempt number `attempt` (1-based), counting
        only the backoffs (an attempt's own duration comes on top)."""
        return sum(self.backoff_s(r) for r in range(1, attempt))

    def give_up_after_s(self, dispatch_deadline_s: float) -> float:
        """Worst case from a task's first dispatch until Cloud Tasks drops it: every attempt runs to the
        dispatch deadline without an answer, and every backoff is taken in full."""
        attempts = self.attempts_until_give_up()
        return attempts * dispatch_deadline_s + self.retry_start_s(attempts)
