#!/usr/bin/env bash
# Set up a fresh machine: uv (from PyPI), redis-server (the agent's tests start one), PostgreSQL (the
# functions' tests start one), the locked environment.
# Safe to run again: each step is skipped where it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  echo "setup: installing uv from PyPI"
  python3 -m pip install --quiet "uv>=0.13"
  hash -r
  command -v uv >/dev/null 2>&1 || {
    echo "setup: uv installed but not on PATH; add Python's scripts directory (e.g. ~/.local/bin) to PATH" >&2
    exit 1
  }
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server (Debian package)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

# A real PostgreSQL for the tests of the functions that talk to one (the bootstrap, the prober's probe).
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "setup: installing postgresql (Debian package)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# Precompiled bytecode: with PYTHONDONTWRITEBYTECODE set, each `fleet plan` would recompile pulumi_aws (~1.5 s).
UV_COMPILE_BYTECODE=1 uv sync --frozen
echo "setup: done. Render the dev stack with: uv run fleet plan --stack dev"
