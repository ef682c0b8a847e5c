#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages (the real Minetest server and
# data, the real client and Xvfb for the faithful-observation mode, Chromium for viewer tests)
# and the project's virtual environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(minetest-server minetest-data minetest xvfb libgl1-mesa-dri x11-utils xdotool chromium)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
test -x /usr/lib/minetest/minetestserver || { echo "setup: minetestserver missing after install" >&2; exit 1; }

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import mtsandbox, torch, stable_baselines3, numba, ray, mss, rliable, statsmodels, importlinter, hypothesis, imageio_ffmpeg" 2>/dev/null; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # The CPU build of torch; a GPU machine can install a CUDA build instead (see README).
  .venv/bin/pip install -q "torch==2.13.0" || .venv/bin/pip install -q torch
  .venv/bin/pip install -q -e ".[dev,client,ray]"
fi
echo "setup: ok"
