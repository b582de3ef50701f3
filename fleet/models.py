"""`fleet models sync | verify`: load models into the model store, and check a mount of it.

    fleet models sync SOURCE --to MOUNT [--model NAME] [--path DIR] [--stack STACK] [--force] [--threads N]
    fleet models verify --at MOUNT (--model NAME ... | --stack STACK) [--sizes-only] [--threads N]

MOUNT is the store's volume mounted writable (sync) or as a node mounts it (verify): `juicefs mount
<metadata URL> MOUNT` from a host in the store's VPC, or a mount of the batch jobs' GCS bucket.

sync: SOURCE is a model directory, or a Hugging Face snapshot already on disk (a hub cache entry
`models--org--name`, whose refs/main names the snapshot, or a snapshot directory; its symlinks are
followed). The model's name defaults to the hub entry's `org/name`; its directory in the volume is the
stack's modelStore.models entry (with --stack; a model the stack does not list is refused) or the name
with an Ollama tag's ':' as a level. Each file is hashed, copied under a temporary name and renamed, so no
reader sees half a file; a file whose size and sha256 the previous manifest already lists, and whose copy
has that size, is kept without reading it back (`--force` copies every file: what to do when `verify`
finds a damaged one); files the model no longer has are removed; the manifest (files, sizes, sha256) is
written last, so a sync that did not finish leaves no manifest and nodes refuse the model. Run it once per
region's volume.

verify: every file each model's manifest lists, with its size and (unless --sizes-only) its sha256.

Exit codes: 0 done (verify: every model matches); 1 a file differs, is missing, or a copy failed;
2 bad arguments or stack file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fleet_agent.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ManifestFile,
    human_bytes,
    model_files,
    model_path,
    read_manifest,
    sha256_file,
    verify,
    write_manifest,
)

if TYPE_CHECKING:
    from components.model_store import ModelStoreConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PARTIAL_SUFFIX = ".fleet-partial"
COPY_CHUNK = 8 << 20


class ModelsError(Exception):
    """One line for the user, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="load models into the model store and check a mount of it")
    actions = models.add_subparsers(dest="action", required=True)
    sync = actions.add_parser(
        "sync", help="copy a model directory (or a Hugging Face snapshot) into the store, manifest last"
    )
    sync.add_argument("source", type=Path, metavar="SOURCE", help="a model directory or HF snapshot")
    sync.add_argument("--to", type=Path, required=True, metavar="MOUNT", help="the store's volume, mounted")
    sync.add_argument("--model", help="the model's name (default: the Hugging Face entry's org/name)")
    sync.add_argument("--path", help="its directory in the volume (default: from the stack, or the name)")
    sync.add_argument("--force", action="store_true", help="copy every file, even those already there")
    verify_action = actions.add_parser("verify", help="check a mount against each model's manifest")
    verify_action.add_argument("--at", type=Path, required=True, metavar="MOUNT", help="the mounted volume")
    verify_action.add_argument("--model", action="append", default=[], help="a model's name (repeatable)")
    verify_action.add_argument("--sizes-only", action="store_true", help="check sizes, not hashes")
    for action in (sync, verify_action):
        action.add_argument("--stack", help="read modelStore.models from Pulumi.<stack>.yaml")
        action.add_argument("--threads", type=int, default=8, help="files handled at once (default 8)")
        action.add_argument("-C", "--cwd", type=Path, default=Path.cwd(), help="run as if started in DIR")


def run(args: argparse.Namespace) -> int:
    try:
        if args.threads < 1:
            raise ModelsError(f"--threads {args.threads}: at least 1")
        store = _stack_store(args.stack, args.cwd) if args.stack else None
        if args.action == "sync":
            return _sync(args, store)
        return _verify(args, store)
    except ModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


# --- where things are ----------------------------------------------------------------------------------


def _stack_store(stack: str, cwd: Path) -> ModelStoreConfig:
    from pydantic import ValidationError

    from components.model_store import ModelStoreConfig  # validated as the program validates it
    from fleet.stackfile import StackFileError, find_project_dir, load_stack

    try:
        config = load_stack(find_project_dir(cwd.resolve()), stack).config
    except StackFileError as exc:
        raise ModelsError(str(exc)) from None
    try:
        return ModelStoreConfig.model_validate(json.loads(config.get("inference-fleet:modelStore", "{}")))
    except (ValueError, ValidationError) as exc:
        raise ModelsError(f"stack {stack}: modelStore is invalid (`fleet plan` says how): {exc}") from None


def snapshot_dir(source: Path) -> tuple[Path, str | None]:
    """The directory holding the model's files, and the model's name where the layout tells it: a hub
    cache entry (models--org--name, its refs/main snapshot), or a snapshot directory inside one."""
    source = source.expanduser()
    if not source.is_dir():
        raise ModelsError(f"{source}: not a directory")
    entry = source
    if source.parent.name == "snapshots":
        entry = source.parent.parent
    name = None
    if entry.name.startswith("models--"):
        name = entry.name.removeprefix("models--").replace("--", "/")
    if source == entry and (entry / "snapshots").is_dir():
        ref = entry / "refs" / "main"
        if not ref.is_file():
            raise ModelsError(f"{source}: a Hugging Face cache entry without refs/main: give its snapshot")
        source = entry / "snapshots" / ref.read_text().strip()
        if not source.is_dir():
            raise ModelsError(f"{source}: refs/main names a snapshot that is not on disk")
    return source, name


def model_directory(name: str, given: str | None, store: ModelStoreConfig | None) -> str:
    from fleet_agent.manifest import path_problem

    if given is not None:
        problem = path_problem(given)
        if problem:
            raise ModelsError(f"--path {problem}")
        return given
    if store is not None:
        try:
            return store.model(name).directory
        except KeyError:
            listed = ", ".join(store.names) or "none"
            raise ModelsError(f"{name}: not in the stack's modelStore.models (it lists: {listed})") from None
    try:
        return model_path(name)
    except ValueError as exc:
        raise ModelsError(f"{exc}; give --path") from None


# --- sync ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Copied:
    entry: ManifestFile
    copied: bool


def _copy_one(source: Path, target: Path, relative: str, previous: Mapping[str, ManifestFile]) -> Copied:
    digest = sha256_file(source)
    size = source.stat().st_size
    entry = ManifestFile(relative, size, digest)
    known = previous.get(relative)
    if known == entry and target.is_file() and target.stat().st_size == size:
        return Copied(entry, copied=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}{PARTIAL_SUFFIX}")
    with source.open("rb") as reader, partial.open("wb") as writer:
        shutil.copyfileobj(reader, writer, COPY_CHUNK)
    os.replace(partial, target)
    return Copied(entry, copied=True)


def sync_model(
    source: Path,
    destination: Path,
    model: str,
    *,
    source_label: str = "",
    threads: int = 8,
    force: bool = False,
) -> tuple[Manifest, int, int]:
    """Copy `source` into `destination` (the model's directory in the volume); returns the manifest
    written, files copied and files removed."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        previous = {} if force else {f.path: f for f in read_manifest(destination).files}
    except ManifestError:
        previous = {}
    files = list(model_files(source))
    if not files:
        raise ModelsError(f"{source}: no files to sync")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda f: _copy_one(f[1], destination / f[0], f[0], previous), files))
    keep = {r.entry.path for r in results}
    removed = 0
    for relative, stale in list(model_files(destination)):
        if relative not in keep:
            stale.unlink()
            removed += 1
    manifest = Manifest(
        model=model,
        files=tuple(r.entry for r in results),
        source=source_label or str(source),
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    write_manifest(destination, manifest)
    return manifest, sum(r.copied for r in results), removed


def _sync(args: argparse.Namespace, store: ModelStoreConfig | None) -> int:
    source, derived = snapshot_dir(args.source)
    name = args.model or derived
    if not name:
        raise ModelsError(f"{args.source}: give --model (the layout does not name the model)")
    if not args.to.is_dir():
        raise ModelsError(f"--to {args.to}: not a directory (mount the store's volume there)")
    directory = model_directory(name, args.path, store)
    started = time.monotonic()
    try:
        manifest, copied, removed = sync_model(
            source,
            args.to / directory,
            name,
            source_label=str(args.source),
            threads=args.threads,
            force=args.force,
        )
    except OSError as exc:
        print(f"error: sync of {name} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"synced {name} into {args.to / directory}: {len(manifest.files)} files, "
        f"{human_bytes(manifest.total_bytes)} ({copied} copied, {len(manifest.files) - copied} unchanged, "
        f"{removed} removed) in {time.monotonic() - started:.1f} s; manifest {MANIFEST_NAME}"
    )
    return EXIT_OK


# --- verify --------------------------------------------------------------------------------------------


def verify_models(
    mount: Path, models: Sequence[tuple[str, str]], *, hashes: bool = True, threads: int = 8
) -> dict[str, list[str]]:
    """Per model (name, directory): its problems, empty when it matches its manifest."""
    found: dict[str, list[str]] = {}
    for name, directory in models:
        model_dir = mount / directory
        try:
            manifest = read_manifest(model_dir)
        except ManifestError as exc:
            found[name] = [str(exc)]
            continue
        problems = [] if manifest.model in ("", name) else [f"the manifest is of {manifest.model!r}"]
        found[name] = problems + verify(model_dir, manifest, hashes=hashes, threads=threads)
    return found


def _verify(args: argparse.Namespace, store: ModelStoreConfig | None) -> int:
    if not args.at.is_dir():
        raise ModelsError(f"--at {args.at}: not a directory (mount the store's volume there)")
    names: list[str] = args.model or (store.names if store is not None else [])
    if not names:
        raise ModelsError("name the models: --model NAME (repeatable) or --stack STACK")
    models = [(name, model_directory(name, None, store)) for name in names]
    results = verify_models(args.at, models, hashes=not args.sizes_only, threads=args.threads)
    for name, problems in results.items():
        if problems:
            print(f"{name}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{name}: ok")
    return EXIT_FAILED if any(results.values()) else EXIT_OK
