#!/usr/bin/env bash
# Bakes a GPU node: driver, engine, agent, units. Runs once, as root, on the Packer build instance.
# Inputs (environment): ENGINE, NVIDIA_DRIVER_BRANCH, VLLM_VERSION, OLLAMA_VERSION, LLAMACPP_RELEASE,
# STAGING (where Packer uploaded the agent wheel, the units and the example config).
set -euo pipefail

: "${ENGINE:?}" "${NVIDIA_DRIVER_BRANCH:?}" "${STAGING:?}"
export DEBIAN_FRONTEND=noninteractive
log() { printf '%s provision: %s\n' "$(date -u +%FT%TZ)" "$*"; }

log "base packages"
apt-get update -q
apt-get install -y -q --no-install-recommends \
  ca-certificates curl jq python3 python3-venv pciutils polkitd

log "NVIDIA driver ${NVIDIA_DRIVER_BRANCH} (server branch) and persistence daemon"
apt-get install -y -q --no-install-recommends \
  "linux-modules-nvidia-${NVIDIA_DRIVER_BRANCH}-server-generic" \
  "nvidia-driver-${NVIDIA_DRIVER_BRANCH}-server" \
  "nvidia-utils-${NVIDIA_DRIVER_BRANCH}-server"
systemctl enable nvidia-persistenced.service
# The build instance has a GPU: prove the driver loads before anything depends on it.
modprobe nvidia
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

log "users and directories"
id fleet >/dev/null 2>&1 || useradd --system --home-dir /var/lib/fleet-agent --shell /usr/sbin/nologin fleet
install -d -m 0755 /etc/fleet-agent /opt/fleet-agent
install -d -m 0775 -o root -g fleet /var/lib/fleet-models

log "fleet agent"
python3 -m venv /opt/fleet-agent
/opt/fleet-agent/bin/pip install --no-cache-dir --upgrade pip
/opt/fleet-agent/bin/pip install --no-cache-dir "${STAGING}"/fleet_agent-*.whl
/opt/fleet-agent/bin/fleet-agent --help >/dev/null
install -m 0644 "${STAGING}/config/agent.example.toml" /etc/fleet-agent/agent.example.toml
install -m 0644 "${STAGING}/systemd/fleet-agent.service" /etc/systemd/system/fleet-agent.service

log "engine: ${ENGINE}"
case "${ENGINE}" in
  vllm)
    : "${VLLM_VERSION:?}"
    python3 -m venv /opt/vllm
    /opt/vllm/bin/pip install --no-cache-dir "vllm==${VLLM_VERSION}"
    /opt/vllm/bin/vllm --version
    ln -sf /opt/vllm/bin/vllm /usr/local/bin/vllm
    ;;
  ollama)
    : "${OLLAMA_VERSION:?}"
    id ollama >/dev/null 2>&1 || useradd --system --home-dir /var/lib/ollama --shell /usr/sbin/nologin ollama
    install -d -m 0775 -o ollama -g fleet /var/lib/fleet-models/ollama
    curl -fsSL "https://github.com/ollama/ollama/releases/download/v${OLLAMA_VERSION}/ollama-linux-amd64.tgz" \
      | tar -xz -C /usr/local
    /usr/local/bin/ollama --version || true  # prints a warning without a running server
    install -m 0644 "${STAGING}/systemd/ollama.service" /etc/systemd/system/ollama.service
    install -d /etc/systemd/system/fleet-agent.service.d
    install -m 0644 "${STAGING}/systemd/fleet-agent.service.d/attach-ollama.conf" \
      /etc/systemd/system/fleet-agent.service.d/attach-ollama.conf
    install -m 0644 "${STAGING}/systemd/50-fleet-agent-ollama.rules" /etc/polkit-1/rules.d/50-fleet-agent-ollama.rules
    systemctl enable ollama.service
    ;;
  llamacpp)
    : "${LLAMACPP_RELEASE:?}"
    install -d /opt/llama.cpp
    curl -fsSL "https://github.com/ggml-org/llama.cpp/releases/download/${LLAMACPP_RELEASE}/llama-${LLAMACPP_RELEASE}-bin-ubuntu-cuda-x64.tar.gz" \
      | tar -xz -C /opt/llama.cpp --strip-components=1
    ln -sf /opt/llama.cpp/llama-server /usr/local/bin/llama-server
    /usr/local/bin/llama-server --version
    ;;
  *)
    echo "unknown ENGINE ${ENGINE}" >&2
    exit 2
    ;;
esac

log "units"
systemctl daemon-reload
systemctl enable fleet-agent.service  # starts at boot once cloud-init has written agent.toml

log "clean up"
apt-get clean
rm -rf /var/lib/apt/lists/* "${STAGING}" /root/.cache
log "done: ${ENGINE} node image"
