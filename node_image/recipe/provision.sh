#!/usr/bin/env bash
# The node image recipe: one script, two targets, so the AMI and the container run the same steps.
#
#   TARGET=ami        EC2 Image Builder (its components run one step each: STEP=<name>), or by hand
#   TARGET=container  node_image/Dockerfile (all steps in one RUN)
#   ENGINE=vllm|ollama
#   STAGING=<dir>     holds recipe/, systemd/, config/ and agent/ (the fleet-agent source and its
#                     hash-locked requirements): the bundle the program uploads, or the build context
#
# Steps, in order: base nvidia engine agent juicefs units cleanup validate. `nvidia` and `units` are the AMI's
# only (a container gets the driver from its host). Everything is installed here; nothing at boot.
set -euo pipefail

: "${TARGET:?TARGET=ami|container}" "${ENGINE:?ENGINE=vllm|ollama}" "${STAGING:?STAGING=<dir>}"
RECIPE="${STAGING}/recipe"
STEPS=(base nvidia engine agent juicefs units cleanup validate)

case "${TARGET}" in ami | container) ;; *) echo "TARGET must be ami or container, got ${TARGET}" >&2; exit 2 ;; esac
case "${ENGINE}" in
  vllm | ollama) ;;
  llamacpp)
    echo "ENGINE llamacpp: llama.cpp publishes no Linux CUDA build; a GPU image runs vllm or ollama" >&2
    exit 2
    ;;
  *) echo "ENGINE must be vllm or ollama, got ${ENGINE}" >&2; exit 2 ;;
esac

set -a
# shellcheck source=node_image/recipe/versions.env
. "${RECIPE}/versions.env"
set +a
export TARGET ENGINE STAGING RECIPE DEBIAN_FRONTEND=noninteractive

log() { printf '%s recipe[%s/%s]: %s\n' "$(date -u +%FT%TZ)" "${TARGET}" "${ENGINE}" "$*"; }
export -f log

run_step() {
  local step="$1"
  log "step ${step}"
  bash "${RECIPE}/steps/${step}.sh"
}

if [[ -n "${STEP:-}" ]]; then
  run_step "${STEP}"
else
  for step in "${STEPS[@]}"; do run_step "${step}"; done
fi
