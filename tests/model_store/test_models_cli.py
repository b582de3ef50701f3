"""`fleet models sync` and `fleet models verify` on a real JuiceFS volume (redis-server, moto's S3, FUSE):
a Hugging Face snapshot on disk goes in with its manifest, a node's read-only mount verifies it, a changed
byte is named, a second sync copies only what changed and removes what the model no longer has."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.cli import main
from fleet_agent.manifest import MANIFEST_NAME, read_manifest, sha256_file
from node_image.agent.tests.agent_testkit.juicefs import Volume, mount, require_fuse, volume

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def hub_snapshot(cache: Path, files: dict[str, bytes]) -> Path:
    """A Hugging Face hub cache entry as `huggingface_hub` lays it out: blobs, a snapshot of symlinks to
    them, refs/main naming the snapshot."""
    entry = cache / "models--Qwen--Qwen2.5-0.5B-Instruct"
    revision = "a" * 40
    snapshot = entry / "snapshots" / revision
    for name, content in files.items():
        blob = entry / "blobs" / sha256_hex(content)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(revision)
    return entry


def sha256_hex(content: bytes) -> str:
    import hashlib

    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def store(tmp_path: Path, moto_url: str) -> Iterator[Volume]:
    require_fuse()
    with volume(tmp_path, moto_url) as vol:
        yield vol


def test_a_snapshot_synced_into_the_store_verifies_on_a_nodes_mount(
    tmp_path: Path, store: Volume, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "config.json": json.dumps({"model_type": "qwen2"}).encode(),
        "model.safetensors": os.urandom(9 << 20),
        "tokenizer/tokenizer.json": b"{}",
    }
    entry = hub_snapshot(tmp_path / "hub", files)
    with mount(store, tmp_path / "writer", tmp_path / "writer-cache") as writer:
        assert main(["models", "sync", str(entry), "--to", str(writer), "--stack", "dev"]) == 0
        out = capsys.readouterr().out
        assert (
            f"synced {MODEL} into {writer / MODEL}: 3 files" in out
            and "(3 copied, 0 unchanged, 0 removed)" in out
        )
        manifest = read_manifest(writer / MODEL)
        assert manifest.model == MODEL
        assert {(f.path, f.size, f.sha256) for f in manifest.files} == {
            (name, len(content), sha256_hex(content)) for name, content in files.items()
        }

    # A node's mount: read-only, another cache.
    with mount(store, tmp_path / "node", tmp_path / "node-cache", read_only=True) as node:
        assert main(["models", "verify", "--at", str(node), "--model", MODEL]) == 0
        assert capsys.readouterr().out == f"{MODEL}: ok\n"

    # A byte changed behind the manifest's back is named; sizes alone do not see it.
    with mount(store, tmp_path / "writer", tmp_path / "writer-cache") as writer:
        weights = writer / MODEL / "model.safetensors"
        with weights.open("r+b") as handle:
            handle.seek(1 << 20)
            handle.write(b"\xff")
        assert main(["models", "verify", "--at", str(writer), "--model", MODEL, "--sizes-only"]) == 0
        capsys.readouterr()
        assert main(["models", "verify", "--at", str(writer), "--model", MODEL]) == 1
        out = capsys.readouterr().out
        assert out.startswith(f"{MODEL}: 1 problem(s)\n  model.safetensors: sha256 ")
        assert f"the manifest says {sha256_hex(files['model.safetensors'])}" in out

        # Sync again from a new revision: the new file is copied, what the manifest lists is not read back
        # (so the damage stays until --force), the file the model no longer has is removed.
        del files["tokenizer/tokenizer.json"]
        files["generation_config.json"] = b'{"do_sample": false}'
        newer = hub_snapshot(tmp_path / "hub2", files)
        assert main(["models", "sync", str(newer), "--to", str(writer)]) == 0
        assert "(1 copied, 2 unchanged, 1 removed)" in capsys.readouterr().out
        assert not (writer / MODEL / "tokenizer" / "tokenizer.json").exists()
        assert main(["models", "verify", "--at", str(writer), "--model", MODEL]) == 1
        assert main(["models", "sync", str(newer), "--to", str(writer), "--force"]) == 0
        assert "(3 copied, 0 unchanged, 0 removed)" in capsys.readouterr().out
        assert sha256_file(weights) == sha256_hex(files["model.safetensors"])
        assert (
            main(["models", "verify", "--at", str(writer), "--stack", "dev"]) == 1
        )  # the dev stack's other model
        out = capsys.readouterr().out
        assert f"{MODEL}: ok\n" in out
        assert f"meta-llama/Llama-3.1-8B-Instruct: 1 problem(s)\n  no {MANIFEST_NAME} in" in out


def test_sync_refuses_what_it_cannot_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "weights"
    source.mkdir()
    (source / "model.gguf").write_bytes(b"gguf")
    target = tmp_path / "mount"
    target.mkdir()
    assert main(["models", "sync", str(source), "--to", str(target)]) == 2
    assert capsys.readouterr().err == f"error: {source}: give --model (the layout does not name the model)\n"
    assert (
        main(["models", "sync", str(source), "--to", str(target), "--model", "mistral:7b", "--stack", "prod"])
        == 2
    )
    assert capsys.readouterr().err == (
        "error: mistral:7b: not in the stack's modelStore.models (it lists: meta-llama/Llama-3.1-8B-Instruct, "
        "qwen2.5:14b)\n"
    )
    assert main(["models", "sync", str(source), "--to", str(target), "--model", "m", "--path", "../up"]) == 2
    assert "error: --path got '../up'" in capsys.readouterr().err
    # The stack's directory for an Ollama tag, and a manifest written last.
    assert (
        main(
            ["models", "sync", str(source), "--to", str(target), "--model", "qwen2.5:14b", "--stack", "prod"]
        )
        == 0
    )
    capsys.readouterr()
    assert read_manifest(target / "ollama" / "qwen2.5-14b").model == "qwen2.5:14b"
    assert main(["models", "verify", "--at", str(target), "--model", "qwen2.5:14b", "--stack", "prod"]) == 0
    assert main(["models", "verify", "--at", str(target)]) == 2
    assert capsys.readouterr().err.endswith(
        "error: name the models: --model NAME (repeatable) or --stack STACK\n"
    )
