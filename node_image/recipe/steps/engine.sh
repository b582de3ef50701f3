#!/usr/bin/env bash
# The inference engine, at its pinned version. vLLM runs from its own venv; Ollama is the release's
# static build (with its CUDA libraries), run by the host unit on a VM (the agent attaches to it) or
# spawned by the agent in a container.
set -euo pipefail

case "${ENGINE}" in
  vllm)
    python3 -m venv /opt/vllm
    /opt/vllm/bin/pip install --no-cache-dir "vllm==${VLLM_VERSION}"
    ln -sf /opt/vllm/bin/vllm /usr/local/bin/vllm
    /opt/vllm/bin/python -c "import vllm, sys; sys.exit(vllm.__version__ != '${VLLM_VERSION}')"
    ;;
  ollama)
    id ollama >/dev/null 2>&1 || useradd --system --uid 10002 --user-group --home-dir /var/lib/ollama \
      --shell /usr/sbin/nologin ollama
    # Releases from 0.14 ship Linux builds as .tar.zst.
    curl -fsSL -o /tmp/ollama.tar.zst \
      "https://github.com/ollama/ollama/releases/download/v${OLLAMA_VERSION}/ollama-linux-amd64.tar.zst"
    tar --zstd -xf /tmp/ollama.tar.zst -C /usr/local
    rm -f /tmp/ollama.tar.zst
    install -d -m 0775 -o ollama -g fleet /var/lib/fleet-models/ollama
    /usr/local/bin/ollama --version 2>&1 | grep -q "${OLLAMA_VERSION}"
    ;;
esac
