"""The contract between the program and the database bootstrap: the event Pulumi invokes the function with
(components/data_tier/gateway_role.py renders it with `to_event`, handler.py reads it with `from_event`).
It carries both passwords, so the program sends it as a secret and the function never logs it. Standard
library only: it ships in the function's archive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BootstrapRequest:
    """Give `gateway_user` (with `gateway_password`) the `database`, connecting as `master_user` to the
    writer at `host`:`port`."""

    host: str
    port: int
    database: str
    master_user: str
    master_password: str = field(repr=False)
    gateway_user: str
    gateway_password: str = field(repr=False)

    def to_event(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "masterUser": self.master_user,
            "masterPassword": self.master_password,
            "gatewayUser": self.gateway_user,
            "gatewayPassword": self.gateway_password,
        }

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> BootstrapRequest:
        return cls(
            host=str(event["host"]),
            port=int(event["port"]),
            database=str(event["database"]),
            master_user=str(event["masterUser"]),
            master_password=str(event["masterPassword"]),
            gateway_user=str(event["gatewayUser"]),
            gateway_password=str(event["gatewayPassword"]),
        )
