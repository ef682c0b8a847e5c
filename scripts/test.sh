#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite (real Minetest servers, < 15 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
