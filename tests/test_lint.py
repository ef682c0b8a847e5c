"""The code stays lint-clean (ruff), type-checks (mypy) and keeps its layers (import-linter)
with the pinned dev versions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_mypy_clean():
    r = subprocess.run([sys.executable, "-m", "mypy", "envs", "agents", "interp", "experiments",
                        "tools", "mtsandbox"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_import_layers(tmp_path):
    """``lint-imports`` with the contracts in pyproject's ``[tool.importlinter]``.

    The packages are mapped folders (``envs/`` is ``mtsandbox.envs``, see package-dir), which
    the import graph builder cannot follow through an editable install; so it reads a tree of
    links laid out as the installed package is."""
    tomllib = pytest.importorskip("tomllib")
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    pkg = tmp_path / "mtsandbox"
    pkg.mkdir()
    for entry in (ROOT / mapping["mtsandbox"]).iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        if name.count(".") == 1:
            (pkg / name.split(".")[1]).symlink_to(ROOT / folder)
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp_path,
                       capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "0 broken" in r.stdout
