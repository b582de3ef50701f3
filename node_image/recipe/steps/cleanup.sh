#!/usr/bin/env bash
# Caches and package lists out of the image.
set -euo pipefail

apt-get clean
rm -rf /var/lib/apt/lists/* /root/.cache
