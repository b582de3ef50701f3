"""The burn-rate arithmetic of multiwindow, multi-burn-rate SLO alerting: pure, no cloud calls.

The Site Reliability Workbook ("Alerting on SLOs", ch. 5, approach 6: multiwindow, multi-burn-rate
alerts) pages when a long window and a short window (1/12 of the long one) both burn the error budget
faster than a rate chosen so that the long window alone would spend a set share of the budget:

    burn rate = share of the budget x SLO window / long window
    fast: 2 % of the budget in 1 h  (short window 5 min)  -> 0.02 x 720 h / 1 h = 14.4 for 30 days
    slow: 5 % of the budget in 6 h  (short window 30 min) -> 0.05 x 720 h / 6 h = 6.0  for 30 days

The workbook's figures (14.4, 6) are for a 30-day window; here they are computed from the configured
window, so a 28-day SLO pages at 13.44 and 5.6. The short window makes the alert stop soon after the
burn stops; the long one keeps a short spike from paging.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class BurnAlert:
    """One pair of windows: page when both burn faster than `burn_rate(window)`."""

    name: str  # fast | slow
    long_seconds: int
    short_seconds: int
    budget_share: float  # the share of the window's error budget the long window alone would spend

    def burn_rate(self, window_days: int) -> float:
        window_hours = window_days * 24
        return round(self.budget_share * window_hours * SECONDS_PER_HOUR / self.long_seconds, 4)

    @property
    def long_label(self) -> str:
        return _duration(self.long_seconds)

    @property
    def short_label(self) -> str:
        return _duration(self.short_seconds)


FAST_BURN = BurnAlert("fast", long_seconds=3600, short_seconds=300, budget_share=0.02)
SLOW_BURN = BurnAlert("slow", long_seconds=6 * 3600, short_seconds=1800, budget_share=0.05)
BURN_ALERTS: tuple[BurnAlert, ...] = (FAST_BURN, SLOW_BURN)


def _duration(seconds: int) -> str:
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def error_budget(objective_percent: float) -> float:
    """The share of events allowed to be bad: 99.9 % -> 0.001; a p95 latency target -> 0.05."""
    return round(1 - objective_percent / 100, 10)


def lowest_alertable_objective(window_days: int) -> float:
    """The lowest objective (percent) whose fast burn still fits in 100 % bad events: below it the fast
    alarm's threshold asks for more than every event to be bad, and it could never fire."""
    return round(100 * (1 - 1 / FAST_BURN.burn_rate(window_days)), 2)
