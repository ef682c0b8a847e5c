#!/usr/bin/env bash
# Copy each finished off-switch run's final checkpoint (model.zip, meta.json, config.yaml) from
# runs/offswitch/ into results/checkpoints/offswitch/ so the evaluated policies are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
for run in runs/offswitch/*__seed*; do
  ck="$run/checkpoints/final"
  [ -f "$ck/meta.json" ] || continue
  dst="results/checkpoints/offswitch/$(basename "$run")"
  [ -f "$dst/meta.json" ] && continue
  mkdir -p "$dst"
  cp "$ck/model.zip" "$ck/meta.json" "$dst/"
  [ -f "$run/config.yaml" ] && cp "$run/config.yaml" "$dst/"
  echo "collected $dst"
done
