#!/usr/bin/env bash
# The fleet agent in its own venv: its dependencies from the hash-locked export of uv.lock, then the
# agent itself from its source (no dependency resolution at bake time).
set -euo pipefail

python3 -m venv /opt/fleet-agent
/opt/fleet-agent/bin/pip install --no-cache-dir --require-hashes --no-deps -r "${STAGING}/agent/requirements.lock.txt"
/opt/fleet-agent/bin/pip install --no-cache-dir --no-deps "${STAGING}/agent"
ln -sf /opt/fleet-agent/bin/fleet-agent /usr/local/bin/fleet-agent
install -m 0644 "${STAGING}/config/agent.example.toml" /etc/fleet-agent/agent.example.toml
/opt/fleet-agent/bin/fleet-agent --version
