"""Where a result came from: the git commit (and whether the tree had local changes), and the
``meta.json`` every checkpoint kind writes last, atomically, with those facts in it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

MODEL_BASED_FORMAT = "mtsandbox-model-based/1"
"""``meta.json["format"]`` of a model-based agent directory (agent.pt, world_model/, meta.json);
here so that both ``checkpoints`` (which loads it) and ``model_based`` (which writes it) name it."""


def git_info() -> dict[str, Any]:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` for the repository."""

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                                 text=True, timeout=5)
            return out.stdout.strip() if out.returncode == 0 else None
        except Exception:
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def write_meta(path: Path, meta: dict[str, Any], extra: dict[str, Any] | None = None,
               name: str = "meta.json") -> Path:
    """Write ``meta``, then provenance (package and torch versions, time, git commit), then
    ``extra`` (which may override either) to ``path/name`` atomically (a temporary file renamed
    over it); returns the file."""
    import torch

    from mtsandbox import __version__

    full = {**meta, "mtsandbox_version": __version__, "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **git_info(), **(extra or {})}
    tmp = path / (name + ".tmp")
    tmp.write_text(json.dumps(full, indent=2, default=str))
    tmp.replace(path / name)
    return path / name
