#!/usr/bin/env bash
# Command 1 of the README: install everything on a fresh Debian 12 machine (as root), then
# run the main job on its embedded default. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh
echo "== main job: a busybox bundle run by pyrunc"
.venv/bin/python scripts/demo.py
