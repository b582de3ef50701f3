"""A model's manifest in the model store: every file of the model with its size and sha256.

`fleet models sync` writes it last, into the model's directory (`fleet-manifest.json`), so a model whose
copy did not finish has none; `fleet models verify` checks a mount against it (sizes and hashes); the
node's agent refuses to warm or serve a model without one, checks the sizes before it warms the files
the manifest lists, and warms exactly those.

Plain Python: the Pulumi program and the `fleet` CLI read the same naming and format as the node.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_NAME = "fleet-manifest.json"
FORMAT = "fleet-model-manifest/1"
_CHUNK = 1 << 20
# A directory in the volume: segments of letters, digits, '.', '_' and '-', never '.' or '..'.
_SEGMENT = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,128}$")


class ManifestError(Exception):
    """The manifest is missing, unreadable, or says something about the files that is not so."""


def model_path(model: str) -> str:
    """The model's directory in the volume: its name, with an Ollama tag's ':' as a level
    (`qwen2.5:14b` -> `qwen2.5/14b`; `meta-llama/Llama-3.1-8B-Instruct` stays as it is)."""
    path = model.replace(":", "/")
    problem = path_problem(path)
    if problem:
        raise ValueError(f"model {model!r}: {problem}")
    return path


def path_problem(path: str) -> str | None:
    """Why `path` cannot be a model's directory in the volume, or None."""
    parts = path.split("/")
    if not path or any(not _SEGMENT.match(p) for p in parts):
        return (
            f"got {path!r}; a directory in the volume is '/'-separated names of letters, digits, "
            "'.', '_' and '-' (not '.' or '..')"
        )
    if parts[0].startswith("."):
        return f"got {path!r}; names starting with '.' at the volume's top are JuiceFS's own"
    return None


@dataclass(frozen=True)
class ManifestFile:
    path: str  # relative to the model's directory, '/'-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    model: str
    files: tuple[ManifestFile, ...]
    source: str = ""
    created_at: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "model": self.model,
            "source": self.source,
            "created_at": self.created_at,
            "total_bytes": self.total_bytes,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            document: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ManifestError(f"{where}: not a {FORMAT} document")
        files = []
        for entry in document.get("files") or []:
            try:
                path, size, digest = str(entry["path"]), int(entry["size"]), str(entry["sha256"])
            except (KeyError, TypeError, ValueError):
                raise ManifestError(f"{where}: a file entry lacks path, size or sha256: {entry!r}") from None
            if not safe_relative(path) or size < 0 or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ManifestError(f"{where}: bad file entry {entry!r}")
            files.append(ManifestFile(path, size, digest))
        if not files:
            raise ManifestError(f"{where}: lists no files")
        return cls(
            model=str(document.get("model", "")),
            files=tuple(files),
            source=str(document.get("source", "")),
            created_at=str(document.get("created_at", "")),
        )


def safe_relative(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and path != MANIFEST_NAME


def read_manifest(model_dir: Path) -> Manifest:
    where = model_dir / MANIFEST_NAME
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"no {MANIFEST_NAME} in {model_dir}: the model was never synced into the store, or its "
            "sync did not finish (`fleet models sync`)"
        ) from None
    except OSError as exc:
        raise ManifestError(f"{where}: cannot read ({exc.strerror})") from None
    return Manifest.from_json(text, str(where))


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    """Written to a temporary name and renamed: the manifest appears whole, and only after every file."""
    final = model_dir / MANIFEST_NAME
    partial = model_dir / f".{MANIFEST_NAME}.partial"
    partial.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(partial, final)
    return final


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, file) for every file of a model directory, symlinks followed (a Hugging Face
    snapshot's files link into its blobs); hidden entries (`.cache/`, `.git*`) and the manifest left out."""
    for root, dirs, names in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name == MANIFEST_NAME:
                continue
            file = Path(root) / name
            if file.is_file():
                yield file.relative_to(directory).as_posix(), file


def size_problems(model_dir: Path, manifest: Manifest) -> list[str]:
    """Files the manifest lists that are missing or of another size (stat only: cheap on a mount)."""
    problems = []
    for entry in manifest.files:
        try:
            size = (model_dir / entry.path).stat().st_size
        except FileNotFoundError:
            problems.append(f"{entry.path}: missing")
            continue
        if size != entry.size:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size}")
    return problems


def verify(model_dir: Path, manifest: Manifest, *, hashes: bool = True, threads: int = 4) -> list[str]:
    """Every problem of a model directory against its manifest: missing files, sizes, then hashes."""
    problems = size_problems(model_dir, manifest)
    if problems or not hashes:
        return problems

    def check(entry: ManifestFile) -> str | None:
        actual = sha256_file(model_dir / entry.path)
        if actual == entry.sha256:
            return None
        return f"{entry.path}: sha256 {actual}, the manifest says {entry.sha256}"

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return [p for p in pool.map(check, manifest.files) if p]


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
