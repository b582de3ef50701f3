"""Who may use a region's gateway Redis: ElastiCache RBAC users in one user group.

The gateway keeps authenticating with its token alone (`AUTH <token>`), which Redis maps to the user named
`default`: that user is the gateway's, with the token as its password. Every other client (the pool
nodes' heartbeats, the fleet controller) gets a user of its own, with its own password and an access
string limited to its keys and commands, so a node's credentials can neither read the gateway's state
nor overwrite the controller's memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi

# Redis maps a client that sends only a password to this user (ElastiCache: every group must hold one).
DEFAULT_USER_NAME = "default"
GATEWAY_ACCESS = "on ~* &* +@all"


@dataclass(frozen=True)
class RedisUser:
    """A client of the gateway Redis other than the gateway, in the regions listed."""

    key: str  # names its resources and ends its user id: `<stack prefix>-redis-<key>`
    user_name: str  # what the client sends: AUTH <user_name> <password>
    password: pulumi.Input[str]
    regions: frozenset[str]
    access: Callable[[str], str]  # the access string for a region
