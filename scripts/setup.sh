#!/usr/bin/env bash
# Set up ./.venv with botter and its dev tools. Where there is no NVIDIA GPU it installs the
# CPU build of torch first (a plain `torch` requirement would pull a multi-GB CUDA build).
# Override the torch requirement with TORCH_SPEC, e.g. TORCH_SPEC="torch==2.5.1".
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
$py -m pip install -q --upgrade pip
if ! $py -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    $py -m pip install -q "${TORCH_SPEC:-torch}"
  else
    $py -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
$py -m pip install -q -e ".[dev]"
