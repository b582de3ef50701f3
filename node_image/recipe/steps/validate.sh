#!/usr/bin/env bash
# What the image must hold. On the AMI this runs on Image Builder's test instance (a GPU instance
# launched from the new image), where the driver must see the GPU.
set -euo pipefail

/opt/fleet-agent/bin/fleet-agent --version
juicefs version
case "${ENGINE}" in
  vllm) /opt/vllm/bin/python -c "import vllm; print('vllm', vllm.__version__)" ;;
  ollama) /usr/local/bin/ollama --version 2>&1 | grep "${OLLAMA_VERSION}" ;;
esac
if [[ "${TARGET}" == ami ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nvidia-ctk --version
  systemctl is-enabled fleet-agent.service fleet-model-cache.service fleet-model-store.service
fi
