"""What one token served by a GPU pool costs: the node-seconds it takes at the pool's throughput, priced at
the pool's hourly cost per node. The gateway's pool entries carry these (LiteLLM's input/output cost per
token), so its spend tracking and per-key budgets count the fleet's own capacity, not $0.

    USD per prompt token    = node USD per hour / 3600 / prompt tokens per second of a node
    USD per generated token = node USD per hour / 3600 / generated tokens per second of a node

The node's hourly cost is the pool's cost at its max size divided by its nodes (its on-demand floor and
spot above it, spot at the highest of its types' prices: budget.py), so a busy pool's tokens are not
under-priced. Prefill and decode overlap on a real node, so this errs high.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.gpu_pools.budget import node_hourly_at_max
from components.gpu_pools.config import GpuPoolConfig

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class TokenCost:
    input_usd_per_token: float
    output_usd_per_token: float
    # Whether the throughput both come from was configured (measured) or the engine's planning default.
    throughput_configured: bool

    def figures(self) -> dict[str, object]:
        return {
            "inputUsdPerMillionTokens": round(self.input_usd_per_token * 1_000_000, 4),
            "outputUsdPerMillionTokens": round(self.output_usd_per_token * 1_000_000, 4),
            "throughput": "configured" if self.throughput_configured else "planning default (set throughput)",
        }


def token_cost(pool: GpuPoolConfig) -> TokenCost | None:
    """The pool's cost per token, or None where the price catalog does not price its types or region."""
    hourly = node_hourly_at_max(pool)
    if hourly is None:
        return None
    prompt_tps, generated_tps, configured = pool.tokens_per_second()
    per_second = hourly / SECONDS_PER_HOUR
    return TokenCost(
        input_usd_per_token=round(per_second / prompt_tps, 12),
        output_usd_per_token=round(per_second / generated_tps, 12),
        throughput_configured=configured,
    )
