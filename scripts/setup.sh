#!/usr/bin/env bash
# Install everything nasprune needs on a fresh Debian machine (run as root, or with sudo available):
# the Fashion-MNIST Debian package, PostgreSQL (for multi-machine tests), torch and the package itself.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  if ! dpkg -s dataset-fashion-mnist postgresql >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist postgresql >/dev/null
  fi
fi

PY=${PYTHON:-python3}
# torch first, pinned, so that nothing resolves a newer build
if ! $PY -c "import torch, torchvision" >/dev/null 2>&1; then
  $PY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
$PY -m pip install -q -e ".[test]"
$PY -c "import nasprune, torch; print('nasprune', nasprune.__version__, '| torch', torch.__version__)"
