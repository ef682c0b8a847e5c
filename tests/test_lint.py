"""The code stays lint-clean (ruff) and type-checks (mypy) with the pinned dev versions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_mypy_clean():
    r = subprocess.run([sys.executable, "-m", "mypy", "envs", "agents", "interp", "experiments",
                        "mtsandbox"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
