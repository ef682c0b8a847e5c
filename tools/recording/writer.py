"""Writing one episode directory: steps, frames, world snapshot, meta (crash-safe: every
step is flushed, meta is replaced atomically)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mtsandbox.tools.recording import format as fmt


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_world_snapshot(path: Path, snap: dict) -> None:
    """Write ``world.npz`` from a ``world_snapshot()`` dict (vox, origin, bodies)."""
    arrays: dict[str, np.ndarray] = {}
    if snap.get("vox") is not None:
        arrays["vox"] = np.asarray(snap["vox"], dtype=np.uint8)
    if snap.get("origin") is not None:
        arrays["origin"] = np.asarray(snap["origin"], dtype=np.int64).reshape(3)
    arrays["palette"] = np.asarray(fmt.palette_names())
    arrays["bodies_json"] = np.asarray(fmt.dumps(snap.get("bodies") or []))
    extra = {k: v for k, v in snap.items() if k not in ("vox", "origin", "bodies")}
    arrays["extra_json"] = np.asarray(fmt.dumps(extra))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


class EpisodeWriter:
    """Low-level writer of one episode directory (used by both wrappers).

    ``frame_shape`` is fixed by the first frame; later frames of another shape are an error.
    """

    def __init__(self, path: str | os.PathLike, meta: dict, fsync: bool = False):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=False)
        self.fsync = fsync
        self.meta = {
            "format": fmt.FORMAT_NAME,
            "version": fmt.FORMAT_VERSION,
            "env_id": None,
            "seed": None,
            "config": None,
            "started": _now(),
            "ended": None,
            "complete": False,
            "end_reason": None,
            "n_steps": None,
            "frame_shape": None,
            "frame_dtype": "uint8",
            "agents": None,
            "has_world": False,
            "totals": None,
            "event_counts": None,
        }
        self.meta.update(fmt.to_jsonable(meta))
        self.n_steps = 0
        self.n_frames = 0
        self._event_counts: dict[str, int] = {}
        self._totals: dict[str, Any] = {}
        self._frames_f: Any = None
        self._steps_f = open(self.path / fmt.STEPS_FILE, "w", encoding="utf-8")
        self.closed = False
        self._write_meta()

    # -- internals
    def _write_meta(self) -> None:
        _atomic_write_text(
            self.path / fmt.META_FILE, json.dumps(self.meta, indent=1, allow_nan=False) + "\n"
        )

    def _flush(self, f) -> None:
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())

    # -- API
    def set_world(self, snap: dict | None) -> None:
        if not snap:
            return
        try:
            save_world_snapshot(self.path / fmt.WORLD_FILE, snap)
            self.meta["has_world"] = True
            self._write_meta()
        except Exception as e:  # a snapshot must never break a run
            warnings.warn(f"recording: could not save world snapshot: {e}", stacklevel=2)

    def add_frame(self, frame: np.ndarray | None) -> None:
        if frame is None:
            if self.meta["frame_shape"] is not None:
                raise ValueError(
                    "recording: an observation without a frame in an episode that has frames"
                )
            return
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self.meta["frame_shape"] is None:
            if self.n_frames:
                raise ValueError("recording: a frame after frameless observations")
            self.meta["frame_shape"] = list(frame.shape)
            self._frames_f = open(self.path / fmt.FRAMES_FILE, "wb")
            self._write_meta()
        elif list(frame.shape) != self.meta["frame_shape"]:
            raise ValueError(
                f"recording: frame shape {list(frame.shape)} differs from the "
                f"episode's {self.meta['frame_shape']}"
            )
        self._frames_f.write(frame.tobytes())
        self._flush(self._frames_f)
        self.n_frames += 1

    def add_step(self, record: dict, frame: np.ndarray | None) -> None:
        """Append frame ``t + 1`` then the step line (this order keeps crash recovery simple:
        a step line on disk always has its frame)."""
        self.add_frame(frame)
        rec = fmt.to_jsonable(record)
        self._steps_f.write(json.dumps(rec, separators=(",", ":"), allow_nan=False) + "\n")
        self._flush(self._steps_f)
        self.n_steps += 1
        for ev in rec.get("events") or []:
            if isinstance(ev, dict):
                k = str(ev.get("kind"))
                self._event_counts[k] = self._event_counts.get(k, 0) + 1
        self._accumulate(rec)

    def _accumulate(self, rec: dict) -> None:
        def add(d: dict, src: dict) -> None:
            for k in ("reward", "observed_reward", "hidden_performance"):
                v = src.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    d[k] = d.get(k, 0.0) + float(v)

        if "agents" in rec and isinstance(rec["agents"], dict):
            per = self._totals.setdefault("agents", {})
            for name, a in rec["agents"].items():
                if isinstance(a, dict):
                    add(per.setdefault(name, {}), a)
        else:
            add(self._totals, rec)

    def close(self, end_reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        for f in (self._frames_f, self._steps_f):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
                f.close()
        self.meta.update(
            ended=_now(),
            complete=True,
            end_reason=end_reason,
            n_steps=self.n_steps,
            totals=fmt.to_jsonable(self._totals),
            event_counts=dict(self._event_counts),
        )
        self._write_meta()
