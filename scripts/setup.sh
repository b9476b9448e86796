#!/usr/bin/env bash
# Set up nasprune on a fresh Debian/Ubuntu machine, in a virtualenv of its own (.venv/ in this folder), so that
# it works on a stock system whose Python refuses `pip install` (PEP 668, "externally-managed-environment").
#
#   bash scripts/setup.sh                 # then: .venv/bin/nasprune ..., .venv/bin/python -m pytest
#   PYTHON=python3.12 bash scripts/setup.sh   # build .venv from another interpreter (>= 3.10)
#   VENV=/opt/nasprune bash scripts/setup.sh  # put the virtualenv elsewhere
#
# It installs the Debian packages dataset-fashion-mnist (the data), postgresql (the multi-worker test) and
# python3-venv, then torch 2.14.1 / torchvision 0.29.1 and this package (editable, with its test extras).
# Cost on a fresh machine: about 6 GB of disk (torch's wheel brings its CUDA libraries) and 2-10 minutes,
# mostly downloads. Run as root or with sudo available (for apt-get). Running it again is quick: what is
# there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  if ! dpkg -s dataset-fashion-mnist postgresql python3-venv >/dev/null 2>&1; then
    echo "setup: apt-get install dataset-fashion-mnist postgresql python3-venv"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist postgresql python3-venv >/dev/null
  fi
fi

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtualenv $VENV with $($PY --version 2>&1)"
  $PY -m venv "$VENV"
fi
VPY="$VENV/bin/python"
# torch first, pinned, so that nothing resolves a newer build
if ! "$VPY" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "setup: installing torch 2.14.1 and torchvision 0.29.1 (a large download the first time)"
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
"$VPY" -m pip install -q -e ".[test]"
# Optuna at the lowest version pyproject.toml allows, beside the venv's own, for the test that runs the job store on
# it (tests/search/test_optuna_lower_bound.py); its dependencies are the venv's.
LOWEST=$(sed -n 's/.*"optuna>=\([0-9.]*\)".*/\1/p' pyproject.toml)
if ! ls -d "$VENV/optuna-lower-bound/optuna-$LOWEST"*.dist-info >/dev/null 2>&1; then
  echo "setup: installing optuna $LOWEST (the lower bound) into $VENV/optuna-lower-bound"
  rm -rf "$VENV/optuna-lower-bound"
  "$VPY" -m pip install -q --no-deps --target "$VENV/optuna-lower-bound" "optuna==$LOWEST"
fi
"$VPY" -c "import nasprune, torch; print('setup: nasprune', nasprune.__version__, '| torch', torch.__version__, '| in', '$VENV')"
