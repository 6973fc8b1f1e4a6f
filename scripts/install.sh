#!/usr/bin/env bash
# System packages, the virtualenv at .venv, the package with its test extras, and bytecode.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(python3 python3-venv python3-dev gcc libcap-dev libseccomp-dev busybox-static runc crun
      iproute2 hyperfine golang-github-opencontainers-specs-dev
      golang-github-opencontainers-image-spec-dev docker-registry skopeo umoci apache2-utils
      golang-go golang-github-opencontainers-runtime-tools-dev
      oci-image-tool docker.io containerd podman golang-github-containers-common buildah mmdebstrap
      containernetworking-plugins gnupg uidmap)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== apt-get install ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Debian's python3 (from PKGS) by default: its PGO+LTO build starts ~0.8 ms sooner than a
# self-built one (5.8 vs 6.6 ms for `python -I -S -c pass` here), and every pyrunc call a shim
# makes is a fresh interpreter. PYTHON=... picks another (3.11 or newer).
PY=${PYTHON:-/usr/bin/python3}
want=$(readlink -f "$(command -v "$PY")")
if [ -x .venv/bin/python ] && [ "$(readlink -f .venv/bin/python)" != "$want" ]; then
  echo "== .venv was made with $(readlink -f .venv/bin/python), not $want: making it again"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "== virtualenv .venv ($want)"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import runtime, pytest, jsonschema" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "== pip install -e .[test]"
  # compat mode: a plain path entry, not an import hook (which costs ~8 ms per pyrunc call)
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
  touch .venv/.installed
fi
# The CRI suite's gRPC stubs (conformance/cri/_gen, gitignored) from our own .proto.
.venv/bin/python conformance/cri/gen.py --force
# Every pyrunc call is a fresh interpreter and PYTHONDONTWRITEBYTECODE may be set: ship .pyc.
.venv/bin/python -m compileall -q -j 0 runtime imagetool >/dev/null
# pyrunc's own launcher instead of pip's console script: `python -I -S` skips site-packages
# (the runtime needs only the standard library; `validate` adds site itself), the caller's
# PYTHON* variables, and ~2 ms of start-up on every call shims make.
repo=$(pwd)
cat > .venv/bin/pyrunc.tmp <<EOF
#!$repo/.venv/bin/python3 -IS
# Written by scripts/install.sh: pyrunc's fast launcher (see README, "Speed").
import sys
sys.path.insert(0, "$repo")
from runtime.cli import entry
entry()
EOF
chmod 755 .venv/bin/pyrunc.tmp
mv .venv/bin/pyrunc.tmp .venv/bin/pyrunc
