#!/usr/bin/env bash
# Create .venv (idempotent) and install domainlm with its test tools.
# torch is installed first and pinned: torch==2.13.0 resolves to a CPU wheel on the CI machines,
# while an unpinned `pip install torch` may pull a multi-GB CUDA build. GPU users: see README.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${DOMAINLM_TORCH_SPEC:-torch==2.13.0}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
