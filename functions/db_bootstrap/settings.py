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
class Witness:
    """The failover heartbeat (functions/failover_prober): its one-row `table` (schema-qualified), the role
    that may update it and the role that may read it, both logging in with IAM database authentication."""

    table: str
    writer: str
    reader: str

    def to_event(self) -> dict[str, str]:
        return {"table": self.table, "writer": self.writer, "reader": self.reader}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Witness:
        return cls(table=str(event["table"]), writer=str(event["writer"]), reader=str(event["reader"]))


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
    # A global database's failover witness; None with one region (nothing to fail over to).
    witness: Witness | None = None

    def to_event(self) -> dict[str, Any]:
        # Without a witness the event is what it always was: Pulumi invokes again only when it changes.
        witness = {"witness": self.witness.to_event()} if self.witness else {}
        return {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "masterUser": self.master_user,
            "masterPassword": self.master_password,
            "gatewayUser": self.gateway_user,
            "gatewayPassword": self.gateway_password,
            **witness,
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
            witness=Witness.from_event(event["witness"]) if event.get("witness") else None,
        )
