"""pulumiverse-time (the Terraform time provider, bridged) as far as a render needs it.

`time:index/sleep:Sleep` has no name in any cloud: it waits `createDuration` on create (and again when a
value in `triggers` changes) and stores its inputs. terraform-provider-time validates both durations with
Go's time.ParseDuration; a duration it would refuse at `pulumi up` fails the render here.
"""

from __future__ import annotations

from typing import Any

from components.core.durations import go_duration_seconds
from fleet.mocks.registry import MockContext, register


class InvalidDurationError(ValueError):
    """A duration the time provider would refuse at `pulumi up`."""


@register("time:index/sleep:Sleep", name_input=None)
def _sleep(ctx: MockContext) -> dict[str, Any]:
    for key in ("createDuration", "destroyDuration"):
        value = ctx.inputs.get(key)
        if isinstance(value, str) and go_duration_seconds(value) is None:
            raise InvalidDurationError(
                f"{ctx.args.name} (time:index/sleep:Sleep): {key} {value!r} is not a Go duration "
                "(e.g. '30s', '10m', '1h30m')"
            )
    return {}


def common_outputs(token: str, physical: str, region: str) -> dict[str, Any]:
    return {}
