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


@pytest.fixture(scope="module")
def package_tree(tmp_path_factory) -> Path:
    """A tree of links laid out as the installed package is (``envs/`` at
    ``mtsandbox/envs``, ...): the mapped folders (pyproject's package-dir) are one package
    there, which import-linter and mypy cannot see through an editable install."""
    tomllib = pytest.importorskip("tomllib")
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    root = tmp_path_factory.mktemp("tree")
    pkg = root / "mtsandbox"
    pkg.mkdir()
    for entry in (ROOT / mapping["mtsandbox"]).iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        if name.count(".") == 1:
            (pkg / name.split(".")[1]).symlink_to(ROOT / folder)
    return root


def test_mypy_clean(package_tree, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                        str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
                        "-p", "mtsandbox"], cwd=package_tree, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_import_layers(package_tree):
    """``lint-imports`` with the contracts in pyproject's ``[tool.importlinter]``."""
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), str(ROOT / "pyproject.toml"), "--no-cache"],
                       cwd=package_tree, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(package_tree)})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "0 broken" in r.stdout


def test_every_data_folder_is_packaged():
    """A non-editable install (a frozen snapshot, a wheel) ships data only from listed
    packages: every folder of YAML/Lua/PNG data under a mapped folder must be one, with its
    file pattern in package-data (a missing one broke ``mtsandbox wireheading train`` from a
    wheel: its base.yaml was left out)."""
    tomllib = pytest.importorskip("tomllib")
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    pkgs, data = set(conf["packages"]), conf["package-data"]
    missing = []
    for pkg, folder in conf["package-dir"].items():
        for d in sorted((ROOT / folder).rglob("*")):
            if not d.is_dir() or "__pycache__" in d.parts:
                continue
            exts = {f.suffix for f in d.iterdir() if f.is_file()} & {".yaml", ".lua", ".png"}
            if not exts:
                continue
            name = ".".join([pkg, *d.relative_to(ROOT / folder).parts])
            pats = data.get(name, [])
            if name not in pkgs or any(f"*{e}" not in pats for e in exts):
                missing.append(f"{name} ({sorted(exts)})")
    assert not missing, f"not packaged with their data: {missing}"
