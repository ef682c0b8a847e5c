#!/usr/bin/env bash
# Set up (idempotent) and run the main job: short PPO training on real Minetest servers,
# recorded evaluation vs random, probe report. Extra arguments go to `mtsandbox demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mtsandbox demo "$@"
