#!/usr/bin/env bash
# Base packages, the agent's user and the model directory.
set -euo pipefail

apt-get update -q
packages=(ca-certificates curl gnupg jq python3 python3-venv zstd fuse3)
if [[ "${TARGET}" == ami ]]; then
  # The model cache on the instance store (mdadm for several NVMe disks, XFS), and polkit for the
  # agent's privileged actions (restarting the host's Ollama, or the model store's stale mount).
  packages+=(mdadm xfsprogs nvme-cli pciutils polkitd)
fi
apt-get install -y -q --no-install-recommends "${packages[@]}"

# A fixed uid/gid: Kubernetes runAsNonRoot and the Dockerfile's USER need a number.
id fleet >/dev/null 2>&1 || useradd --system --uid 10001 --user-group --home-dir /var/lib/fleet-agent \
  --shell /usr/sbin/nologin fleet
install -d -m 0755 /etc/fleet-agent /opt/fleet-agent
install -d -m 0775 -o root -g fleet /var/lib/fleet-models
install -d -m 0775 -o fleet -g fleet /var/lib/fleet-models/hf
