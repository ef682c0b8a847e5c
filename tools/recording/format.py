"""The episode format: names, version, JSON conversion, frame extraction, episode
numbering (the full spec is ``docs/recording_format.md``)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mtsandbox.envs.nodes import load_palette

FORMAT_NAME = "mtsandbox-episode"
FORMAT_VERSION = 1

META_FILE = "meta.json"
STEPS_FILE = "steps.jsonl"
FRAMES_FILE = "frames.u8"
WORLD_FILE = "world.npz"
EP_DIR_RE = re.compile(r"^ep_(\d{6,})$")

# Keys of the env info contract (docs/ARCHITECTURE.md) copied into every step line.
INFO_KEYS = (
    "observed_reward",
    "hidden_performance",
    "events",
    "pose",
    "tree_in_view",
    "dist_nearest_trunk",
)
# Extra info keys that are copied when present (positions of other bodies for the map; the
# scenarios' task state that probes read: the reward button's owed presses, the overseer).
OPTIONAL_INFO_KEYS = ("bodies", "arena_seed", "truncation_reason", "interrupted", "instruction",
                      "pending_presses", "overseer_in_view", "overseer_dist")
# ... and every ``<object>_in_view`` label (the scenarios' view labels, one per object node).
VIEW_LABEL_SUFFIX = "_in_view"


class RecordingError(Exception):
    """A recording cannot be read; ``str(err)`` is one line naming the file and the problem."""


def to_jsonable(x: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats to strict-JSON values."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        if x.size > 4096:
            return f"<ndarray shape={list(x.shape)} dtype={x.dtype}>"
        return to_jsonable(x.tolist())
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # torch scalars and similar
        try:
            return to_jsonable(x.item())
        except (TypeError, ValueError, RuntimeError):
            pass
    if hasattr(x, "tolist") and callable(x.tolist):  # torch tensors
        try:
            return to_jsonable(x.tolist())
        except (TypeError, ValueError, RuntimeError):
            pass
    return repr(x)


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), separators=(",", ":"), allow_nan=False)


def palette_names() -> list[str]:
    """Palette names by index (``envs/nodes.yaml``; gaps are empty strings)."""
    names = load_palette().names
    out = [""] * (max(names) + 1)
    for i, name in names.items():
        out[i] = name
    return out


def default_frame_fn(obs: Any) -> np.ndarray | None:
    """Pick the image out of an observation: an (H, W[, C]) uint8 array, channel-first arrays
    are transposed, dict observations use key ``image``/``rgb``/``pixels``/``frame``/``obs``.
    Returns ``None`` when no image is found (the episode is then recorded without frames)."""
    if isinstance(obs, dict):
        for k in ("image", "rgb", "pixels", "frame", "obs"):
            if k in obs:
                return default_frame_fn(obs[k])
        return None
    if not isinstance(obs, np.ndarray):
        return None
    a = obs
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = (np.clip(a, 0, 1) * 255).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim == 3:
        if a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = np.transpose(a, (1, 2, 0))
        return np.ascontiguousarray(a)
    return None


def next_episode_index(root: str | os.PathLike) -> int:
    """The first index after every existing ``ep_NNNNNN`` directory in ``root``."""
    root = Path(root)
    best = -1
    if root.is_dir():
        for p in root.iterdir():
            m = EP_DIR_RE.match(p.name)
            if m and p.is_dir():
                best = max(best, int(m.group(1)))
    return best + 1
