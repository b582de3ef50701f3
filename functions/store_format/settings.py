"""The contract between the program and the format function (components/model_store/store.py renders it,
handler.py reads it): the function's settings (`FormatSettings`: which client to run, through its
environment) and what each invocation asks for (`FormatRequest`: the volume and where it lives, through
the event Pulumi invokes it with). Standard library only: it ships in the function's archive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Each JuiceFS command (format, then status) may take this long; the function's timeout allows both.
COMMAND_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class FormatSettings:
    # The client the layer carries, and the sha256 it must have (None: run it unchecked).
    juicefs: str = "juicefs"
    juicefs_sha256: str | None = None

    def to_env(self) -> dict[str, str]:
        env = {"JUICEFS": self.juicefs}
        if self.juicefs_sha256:
            env["JUICEFS_SHA256"] = self.juicefs_sha256
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> FormatSettings:
        return cls(juicefs=env.get("JUICEFS", "juicefs"), juicefs_sha256=env.get("JUICEFS_SHA256") or None)


@dataclass(frozen=True)
class Volume:
    """What makes the volume: formatting again with the same values is a no-op."""

    name: str
    storage: str = "s3"
    block_size_kib: int = 4096
    trash_days: int = 0

    def to_event(self) -> dict[str, Any]:
        return {
            "volume": self.name,
            "storage": self.storage,
            "blockSizeKib": self.block_size_kib,
            "trashDays": self.trash_days,
        }

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Volume:
        return cls(
            name=str(event["volume"]),
            storage=str(event.get("storage", "s3")),
            block_size_kib=int(event.get("blockSizeKib", 4096)),
            trash_days=int(event.get("trashDays", 0)),
        )


@dataclass(frozen=True)
class FormatRequest:
    """One invocation: the volume, its metadata Redis (no credentials in the URL) and its chunks' bucket.
    The password travels in the event only, which Pulumi keeps as a secret."""

    volume: Volume
    meta_url: str
    bucket: str
    password: str = ""

    def to_event(self) -> dict[str, Any]:
        return {
            **self.volume.to_event(),
            "metaUrl": self.meta_url,
            "bucket": self.bucket,
            "password": self.password,
        }

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> FormatRequest:
        return cls(
            volume=Volume.from_event(event),
            meta_url=str(event["metaUrl"]),
            bucket=str(event["bucket"]),
            password=str(event.get("password") or ""),
        )
