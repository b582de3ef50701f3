#!/usr/bin/env bash
# The NVIDIA datacenter driver (the kernel's own flavour of modules, via ubuntu-drivers) and the NVIDIA
# Container Toolkit. AMI only: a container gets the driver from its host (Cloud Run, the GPU operator).
set -euo pipefail

if [[ "${TARGET}" != ami ]]; then
  log "nvidia: skipped for a container (the host provides the driver)"
  exit 0
fi

apt-get install -y -q --no-install-recommends ubuntu-drivers-common
# Picks linux-modules-nvidia-<branch>-server-<flavour> for the running kernel (aws), not -generic.
ubuntu-drivers install --gpgpu "nvidia:${NVIDIA_DRIVER_BRANCH}-server"
apt-get install -y -q --no-install-recommends "nvidia-utils-${NVIDIA_DRIVER_BRANCH}-server"
systemctl enable nvidia-persistenced.service

keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --batch --yes --dearmor -o "${keyring}"
curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
  | sed "s#deb https://#deb [signed-by=${keyring}] https://#g" \
  > /etc/apt/sources.list.d/nvidia-container-toolkit.list
apt-get update -q
version="${NVIDIA_CONTAINER_TOOLKIT_VERSION}"
apt-get install -y -q --no-install-recommends \
  "nvidia-container-toolkit=${version}" "nvidia-container-toolkit-base=${version}" \
  "libnvidia-container-tools=${version}" "libnvidia-container1=${version}"
