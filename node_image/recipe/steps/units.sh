#!/usr/bin/env bash
# systemd units (AMI only; in a container the agent is the entrypoint). The agent starts at boot once
# cloud-init has written /etc/fleet-agent/agent.toml; the model cache is set up on the instance store
# and the model store mounted (read-only, JuiceFS) before it.
set -euo pipefail

if [[ "${TARGET}" != ami ]]; then
  log "units: skipped for a container (the agent is the entrypoint)"
  exit 0
fi

units="${STAGING}/systemd"
install -m 0755 "${RECIPE}/files/fleet-model-cache" /usr/local/sbin/fleet-model-cache
install -m 0644 "${units}/fleet-model-cache.service" /etc/systemd/system/fleet-model-cache.service
install -m 0644 "${units}/fleet-model-store.service" /etc/systemd/system/fleet-model-store.service
install -m 0644 "${units}/fleet-agent.service" /etc/systemd/system/fleet-agent.service
install -m 0644 "${units}/50-fleet-agent-model-store.rules" /etc/polkit-1/rules.d/50-fleet-agent-model-store.rules
# Not enabled: the fleet controller starts it (SSM Run Command) to restart a silent agent.
install -m 0644 "${units}/fleet-agent-restart.service" /etc/systemd/system/fleet-agent-restart.service
enabled=(fleet-model-cache.service fleet-model-store.service fleet-agent.service)
if [[ "${ENGINE}" == ollama ]]; then
  install -m 0644 "${units}/ollama.service" /etc/systemd/system/ollama.service
  install -d /etc/systemd/system/fleet-agent.service.d
  install -m 0644 "${units}/fleet-agent.service.d/attach-ollama.conf" \
    /etc/systemd/system/fleet-agent.service.d/attach-ollama.conf
  install -m 0644 "${units}/50-fleet-agent-ollama.rules" /etc/polkit-1/rules.d/50-fleet-agent-ollama.rules
  enabled+=(ollama.service)
fi
systemctl daemon-reload
systemctl enable "${enabled[@]}"
