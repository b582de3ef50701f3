"""The model store's read path on real parts: redis-server (metadata), moto_server as the S3 API (chunks,
its own process), the real JuiceFS client over FUSE, one multi-GiB file.

    uv run python bench/model_store.py [--size-gib 2] [--streams 4] [--ready-gib 1]

Reads the same file three ways, each with the page cache of what it reads dropped first (the file, and
for JuiceFS its cache blocks), so every figure is a read from where the bytes live:
  cold: through a node's mount (the agent's command line: read-only, prod's prefetch and buffer) with an
        empty cache (chunks come from the object store);
  warm: the same, after `juicefs warmup` (chunks come from the local cache directory);
  local: the file on the local disk the cache lives on.
`--streams` readers each take a contiguous share of the file (a loader reading several shards at once).
Then the agent's time to ready (`fleet-agent run`, spawn mode: mount, warm the model as its manifest lists
it, start llama.cpp on it, pass the canary) with a model of `--ready-gib` on the store: first with an
empty cache, then again with the cache the first run left.

Prints the steps, then one JSON object as the last line. Goal: warm_over_local >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from testkit.moto_server import running_moto  # noqa: E402

from fleet_agent.config import ModelStoreConfig  # noqa: E402
from fleet_agent.juicefs import JuiceFs  # noqa: E402
from node_image.agent.tests.agent_testkit.harness import LLAMA_SERVER, to_toml  # noqa: E402
from node_image.agent.tests.agent_testkit.juicefs import (  # noqa: E402
    Volume,
    force_unmount,
    fuse_problem,
    mount,
    put_model,
    volume,
)
from node_image.agent.tests.agent_testkit.net import free_port  # noqa: E402
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama  # noqa: E402

MIB = 1 << 20
# Prod's modelStore.cache (Pulumi.prod.yaml): prefetch 4, the default 1024 MiB read buffer.
NODE_PREFETCH, NODE_BUFFER_MIB = 4, 1024
CHUNK = 16 * MIB
API_KEY = "bench-key-0123456789"
POSIX_FADV_DONTNEED = 4
_libc = ctypes.CDLL(None, use_errno=True)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (as `vmtouch -e`): the next read goes to its storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _libc.posix_fadvise(fd, ctypes.c_long(0), ctypes.c_long(0), POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict_tree(directory: Path) -> None:
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                evict(Path(root) / name)


def drop_caches(*paths: Path, trees: tuple[Path, ...] = ()) -> str:
    """The kernel's caches dropped where allowed; else each file's pages (and each tree's)."""
    with contextlib.suppress(OSError):
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "drop_caches"
    for path in paths:
        evict(path)
    for tree in trees:
        evict_tree(tree)
    return "fadvise"


def read_throughput(path: Path, streams: int) -> float:
    """MB/s (10^6 bytes) reading the whole file with `streams` readers, each a contiguous share."""
    size = path.stat().st_size
    share = -(-size // streams)
    errors: list[BaseException] = []

    def reader(start: int) -> None:
        try:
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)
            fd = os.open(path, os.O_RDONLY)
            try:
                offset, end = start, min(start + share, size)
                while offset < end:
                    got = os.preadv(fd, [view[: min(CHUNK, end - offset)]], offset)
                    if got <= 0:
                        raise OSError(f"short read at {offset}")
                    offset += got
            finally:
                os.close(fd)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i * share,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return size / elapsed / 1e6


def write_random(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("wb") as handle:
        written = 0
        while written < size:
            handle.write(block[: min(CHUNK, size - written)])
            written += CHUNK
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def node_mount(vol: Volume, mount_point: Path, cache: Path) -> Iterator[Path]:
    """The volume mounted as a prod node's agent mounts it: its command line, prod's cache settings."""
    config = ModelStoreConfig.model_validate(
        {
            "volume": vol.name,
            "meta_url": vol.meta_url,
            "meta_password_file": str(vol.password_file),
            "mount_point": str(mount_point),
            "model_dir": "bench",
            "cache_dir": str(cache),
            "cache_size_mib": 64 * 1024,
            "prefetch": NODE_PREFETCH,
            "buffer_size_mib": NODE_BUFFER_MIB,
            "metrics_address": "127.0.0.1:0",
            "log_file": str(mount_point.parent / "node-juicefs.log"),
            "juicefs": [vol.juicefs],
        }
    )
    try:
        asyncio.run(JuiceFs(config).mount())
        yield mount_point
    finally:
        force_unmount(vol.juicefs, mount_point)


def read_figures(vol: Volume, work: Path, size: int, streams: int) -> dict[str, float | str]:
    local = work / "local" / "weights.bin"
    local.parent.mkdir()
    log(f"writing {size / 2**30:.1f} GiB of random bytes to the local disk")
    write_random(local, size)
    with mount(vol, work / "writer", work / "writer-cache") as writer:
        log("copying it into the volume (through a writable mount)")
        started = time.perf_counter()
        shutil.copyfile(local, writer / "weights.bin")
        log(f"  copied in {time.perf_counter() - started:.1f} s")
    cache = work / "node-cache"
    with node_mount(vol, work / "node", cache) as node:
        target = node / "weights.bin"
        how = drop_caches(target)
        cold = read_throughput(target, streams)
        log(f"cold read (chunks from the object store): {cold:.0f} MB/s")
        subprocess.run(
            [vol.juicefs, "warmup", "--threads", "16", str(target)],
            check=True,
            capture_output=True,
            timeout=3600,
        )
        warm_runs, local_runs = [], []
        for _ in range(2):
            drop_caches(target, local, trees=(cache,))
            warm_runs.append(read_throughput(target, streams))
            drop_caches(local)
            local_runs.append(read_throughput(local, streams))
        warm, local_mb = max(warm_runs), max(local_runs)
        log(f"warm read (chunks from the local cache): {warm:.0f} MB/s; local disk: {local_mb:.0f} MB/s")
    local.unlink()
    return {"cold_mb_s": cold, "warm_mb_s": warm, "local_mb_s": local_mb, "cache_drop": how}


def agent_ready_seconds(vol: Volume, work: Path, cache: Path, run: str) -> float:
    """`fleet-agent run` to /readyz 200, the agent mounting the store itself (spawn mode)."""
    model = work / "models" / "bench" / "tiny" / "tiny.gguf"
    key_file = work / "api-key"
    key_file.write_text(API_KEY + "\n")
    port = free_port()
    config = {
        "node": {"id": "bench", "region": "local", "pool": "bench", "accelerator": "cpu"},
        "engine": {
            "kind": "llamacpp",
            "models": ["tiny"],
            "model_path": str(model),
            "port": free_port(),
            "executable": LLAMA_SERVER,
        },
        "server": {"host": "127.0.0.1", "port": port, "api_key_file": str(key_file)},
        "model_store": {
            "volume": vol.name,
            "meta_url": vol.meta_url,
            "meta_password_file": str(vol.password_file),
            "mount_point": str(work / "models"),
            "model_dir": "bench/tiny",
            "cache_dir": str(cache),
            "cache_size_mib": 64 * 1024,
            "prefetch": NODE_PREFETCH,
            "buffer_size_mib": NODE_BUFFER_MIB,
            "metrics_address": "127.0.0.1:0",
            "log_file": str(work / f"agent-juicefs-{run}.log"),
            "juicefs": [vol.juicefs],
        },
    }
    path = work / f"agent-{run}.toml"
    path.write_text(to_toml(config))
    agent = [sys.executable, "-m", "fleet_agent.main", "run", "--config", str(path)]
    started = time.perf_counter()
    process = subprocess.Popen(
        agent, stdout=subprocess.DEVNULL, stderr=(work / f"agent-{run}.log").open("wb")
    )
    try:
        url = f"http://127.0.0.1:{port}/readyz"
        deadline = started + 1800
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return time.perf_counter() - started
            if process.poll() is not None:
                sys.exit(f"the agent exited {process.returncode}: see {work / f'agent-{run}.log'}")
            time.sleep(0.05)
        sys.exit("the agent was not ready within 30 minutes")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
        force_unmount(vol.juicefs, work / "models")


def ready_figures(vol: Volume, work: Path, model_bytes: int) -> dict[str, float]:
    tiny = write_tiny_llama(work / "tiny.gguf")
    weights = work / "weights.bin"
    write_random(weights, model_bytes)
    with mount(vol, work / "writer", work / "writer-cache") as writer:
        log(f"putting a model of {model_bytes / 2**30:.1f} GiB on the store (a GGUF and its weights)")
        put_model(writer / "bench" / "tiny", {"tiny.gguf": tiny, "weights.bin": weights}, "tiny")
    weights.unlink()
    cache = work / "agent-cache"
    cold = agent_ready_seconds(vol, work, cache, "cold")
    log(f"agent ready with an empty cache: {cold:.1f} s")
    warm = agent_ready_seconds(vol, work, cache, "warm")
    log(f"agent ready again, the cache warm: {warm:.1f} s")
    return {"ready_cold_s": cold, "ready_warm_s": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0, help="the read test's file (default 2)")
    parser.add_argument("--streams", type=int, default=4, help="parallel readers (default 4)")
    parser.add_argument("--ready-gib", type=float, default=1.0, help="the agent's model (default 1)")
    args = parser.parse_args()
    problem = fuse_problem()
    if problem:
        sys.exit(problem)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-store-", dir=os.environ.get("BENCH_DIR")) as scratch:
        work = Path(scratch)
        with running_moto() as moto, volume(work, moto) as vol:
            (work / "read").mkdir()
            (work / "ready").mkdir()
            reads = read_figures(vol, work / "read", int(args.size_gib * 2**30), args.streams)
            ready = ready_figures(vol, work / "ready", int(args.ready_gib * 2**30))
    cold, warm, local = (float(reads[k]) for k in ("cold_mb_s", "warm_mb_s", "local_mb_s"))
    result = {
        "file_gib": args.size_gib,
        "streams": args.streams,
        "cold_mb_s": round(cold),
        "warm_mb_s": round(warm),
        "local_mb_s": round(local),
        "warm_over_local": round(warm / local, 2),
        "warm_over_cold": round(warm / cold, 2),
        "page_cache": reads["cache_drop"],
        "ready_model_gib": args.ready_gib,
        "ready_cold_s": round(ready["ready_cold_s"], 1),
        "ready_warm_s": round(ready["ready_warm_s"], 1),
        "goal_warm_over_local": 0.8,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
