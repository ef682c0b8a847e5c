"""Reading recordings: :func:`load_episode` -> :class:`Episode` (frames as a read-only
``np.memmap``), :func:`find_episodes`. Malformed recordings raise :class:`RecordingError`
with a one-line message."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtsandbox.tools.recording import format as fmt
from mtsandbox.tools.recording.format import RecordingError


@dataclass
class Episode:
    """A loaded episode.

    ``frames``: read-only ``np.memmap`` of shape ``(n_frames, *frame_shape)`` (``None`` for
    frameless recordings); ``frames[i]`` is the observation at time ``i``.
    ``steps``: the step dicts (``steps[t]`` led from frame ``t`` to frame ``t + 1``).
    ``complete``: the writer closed the episode cleanly (``meta["complete"]``).
    ``truncated_recording``: the recording stops early (process killed / disk full): no end
    marker, a partial last frame or a partial last line; ``problems`` says what was cut.
    """

    path: Path
    meta: dict
    steps: list[dict]
    frames: np.ndarray | None
    complete: bool
    truncated_recording: bool
    problems: list[str] = field(default_factory=list)
    _world: dict | None = field(default=None, repr=False)

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def n_frames(self) -> int:
        return 0 if self.frames is None else int(self.frames.shape[0])

    @property
    def agents(self) -> list[str] | None:
        return self.meta.get("agents")

    @property
    def actions(self) -> list:
        if self.agents:
            return [
                {a: r.get("action") for a, r in s.get("agents", {}).items()} for s in self.steps
            ]
        return [s.get("action") for s in self.steps]

    def series(self, key: str, agent: str | None = None) -> np.ndarray:
        """Per-step float series of ``key`` (NaN where missing); ``agent`` for multi-agent."""
        out = np.full(len(self.steps), np.nan)
        for i, s in enumerate(self.steps):
            src = s
            if "agents" in s and isinstance(s["agents"], dict):
                name = agent if agent is not None else (self.agents or [""])[0]
                src = s["agents"].get(name, {})
            v = src.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[i] = float(v)
        return out

    @property
    def rewards(self) -> np.ndarray:
        return self.series("reward")

    @property
    def events(self) -> list[dict]:
        out = list((self.meta.get("reset_info") or {}).get("events") or [])
        for s in self.steps:
            out.extend(e for e in s.get("events") or [] if isinstance(e, dict))
        return out

    def event_counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for e in self.events:
            k = str(e.get("kind"))
            c[k] = c.get(k, 0) + 1
        return c

    @property
    def world(self) -> dict | None:
        """The reset world snapshot: ``vox``, ``origin``, ``palette`` (names), ``bodies``."""
        if self._world is None:
            p = self.path / fmt.WORLD_FILE
            if not p.exists():
                return None
            try:
                with np.load(p, allow_pickle=False) as z:
                    w: dict[str, Any] = {k: z[k] for k in z.files}
            except Exception as e:
                raise RecordingError(f"corrupt world snapshot {p}: {_one_line(e)}") from None
            w["palette"] = [str(s) for s in w.get("palette", np.asarray(fmt.palette_names()))]
            w["bodies"] = json.loads(str(w.pop("bodies_json", "[]")))
            w["extra"] = json.loads(str(w.pop("extra_json", "{}")))
            self._world = w
        return self._world

    def pose_at(self, i: int, agent: str | None = None) -> dict | None:
        """Pose at frame ``i`` (reset pose for 0, else the pose after step ``i - 1``)."""
        if i <= 0:
            src = self.meta.get("reset_info") or {}
        else:
            src = self.steps[min(i, len(self.steps)) - 1]
        if "agents" in src and isinstance(src["agents"], dict):
            src = src["agents"].get(agent or (self.agents or [""])[0], {})
        return src.get("pose")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def load_episode(path: str | os.PathLike) -> Episode:
    """Load an episode directory. Interrupted recordings load with ``complete=False`` and
    ``truncated_recording=True``; malformed ones raise :class:`RecordingError` (one line)."""
    path = Path(path)
    mp = path / fmt.META_FILE
    if not path.is_dir():
        raise RecordingError(f"not an episode directory: {path}")
    if not mp.exists():
        raise RecordingError(f"not an episode directory (no {fmt.META_FILE}): {path}")
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordingError(f"corrupt {mp}: not valid JSON ({_one_line(e)})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt.FORMAT_NAME:
        raise RecordingError(
            f"corrupt {mp}: not a {fmt.FORMAT_NAME} meta file "
            f"(format={meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    ver = meta.get("version")
    if not isinstance(ver, int) or ver < 1 or ver > fmt.FORMAT_VERSION:
        raise RecordingError(
            f"{mp}: unsupported recording format version {ver!r} "
            f"(this reader supports 1..{fmt.FORMAT_VERSION})"
        )

    problems: list[str] = []
    complete = bool(meta.get("complete"))
    if not complete:
        problems.append("no end marker (meta.json complete=false): recording was interrupted")

    # steps.jsonl: a partial last line is a crash artefact; a bad line earlier is corruption.
    steps: list[dict] = []
    sp = path / fmt.STEPS_FILE
    if sp.exists():
        raw = sp.read_bytes()
        lines = raw.split(b"\n")
        tail_partial = lines[-1] != b""  # file does not end with a newline
        if not tail_partial:
            lines = lines[:-1]
        for n, ln in enumerate(lines):
            last = n == len(lines) - 1
            try:
                rec = json.loads(ln)
                if not isinstance(rec, dict):
                    raise ValueError("line is not a JSON object")
            except (ValueError, UnicodeDecodeError) as e:
                if last and (tail_partial or not complete):
                    problems.append(f"partial last line {n + 1} of {fmt.STEPS_FILE} dropped")
                    break
                raise RecordingError(f"corrupt {sp}: line {n + 1}: {_one_line(e)}") from None
            steps.append(rec)
    elif complete and meta.get("n_steps"):
        raise RecordingError(f"missing {sp} in a complete recording")

    frames: np.ndarray | None = None
    shape = meta.get("frame_shape")
    fp = path / fmt.FRAMES_FILE
    if shape:
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise RecordingError(f"corrupt {mp}: bad frame_shape {shape!r}") from None
        fbytes = int(np.prod(shape))
        size = fp.stat().st_size if fp.exists() else 0
        n_full = size // fbytes if fbytes else 0
        if size % fbytes:
            problems.append(
                f"partial last frame in {fmt.FRAMES_FILE} dropped "
                f"({size % fbytes} of {fbytes} bytes)"
            )
        # Align: frames = steps + 1. Frames are written before their step line.
        n_steps = min(len(steps), max(n_full - 1, 0))
        if n_steps < len(steps):
            problems.append(f"{len(steps) - n_steps} step line(s) without a frame dropped")
            steps = steps[:n_steps]
        n_frames = n_steps + 1 if n_full else 0
        if n_full > n_frames:
            problems.append(f"{n_full - n_frames} frame(s) without a step line dropped")
        if n_frames:
            frames = np.memmap(fp, dtype=np.uint8, mode="r", shape=(n_frames, *shape))
        else:
            frames = np.zeros((0, *shape), np.uint8)
    if complete and meta.get("n_steps") is not None and meta["n_steps"] != len(steps):
        problems.append(f"meta says n_steps={meta['n_steps']} but {len(steps)} are readable")
    truncated = bool(problems)
    return Episode(
        path=path,
        meta=meta,
        steps=steps,
        frames=frames,
        complete=complete,
        truncated_recording=truncated,
        problems=problems,
    )


def is_episode_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / fmt.META_FILE).is_file()


def find_episodes(root: str | os.PathLike, max_depth: int = 4) -> list[Path]:
    """Episode directories under ``root`` (``root`` itself if it is one), sorted by path."""
    root = Path(root)
    if is_episode_dir(root):
        return [root]
    out: list[Path] = []

    def walk(p: Path, depth: int) -> Iterator[Path]:
        try:
            children = sorted(c for c in p.iterdir() if c.is_dir())
        except OSError:
            return
        for c in children:
            if is_episode_dir(c):
                yield c
            elif depth < max_depth:
                yield from walk(c, depth + 1)

    out.extend(walk(root, 1))
    return out
