"""Export of a recorded episode to GIF (or MP4 when an ffmpeg backend is installed)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from mtsandbox.tools.recording.format import RecordingError
from mtsandbox.tools.recording.reader import Episode, load_episode


def mp4_available() -> bool:
    """True when imageio can write MP4 (imageio-ffmpeg or PyAV installed)."""
    for mod in ("imageio_ffmpeg", "av"):
        try:
            __import__(mod)
            return True
        except Exception:
            continue
    return False


def _frame_rgb(ep: Episode, i: int, agent: int = 0) -> np.ndarray:
    assert ep.frames is not None
    f = np.asarray(ep.frames[i])
    if ep.agents and f.ndim == 4:
        f = f[min(agent, f.shape[0] - 1)]
    if f.ndim == 2:
        f = f[:, :, None]
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    elif f.shape[-1] == 4:
        f = f[:, :, :3]
    elif f.shape[-1] != 3:  # e.g. stacked grey frames: show the newest one
        f = np.repeat(f[:, :, -1:], 3, axis=-1)
    return np.ascontiguousarray(f)


def export_episode(
    path: str | os.PathLike | Episode,
    out: str | os.PathLike,
    *,
    fps: float = 10.0,
    scale: int = 4,
    agent: int = 0,
) -> Path:
    """Write the episode's frames to ``out`` (``.gif`` or ``.mp4``), nearest-neighbour scaled
    by ``scale``. MP4 needs an ffmpeg backend (imageio-ffmpeg or PyAV); without one the video is
    written as GIF next to it (``.gif`` suffix) with a warning. Returns the written path."""
    import imageio.v3 as iio

    ep = path if isinstance(path, Episode) else load_episode(path)
    if ep.frames is None or ep.n_frames == 0:
        raise RecordingError(f"episode {ep.path} has no frames to export")
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"export: unsupported output {out} (use .gif or .mp4)")
    if suffix == ".mp4" and not mp4_available():
        warnings.warn(
            "export: no ffmpeg backend (pip install imageio-ffmpeg); writing GIF", stacklevel=2
        )
        out, suffix = out.with_suffix(".gif"), ".gif"
    scale = max(1, int(scale))
    frames = []
    for i in range(ep.n_frames):
        f = _frame_rgb(ep, i, agent)
        if scale > 1:
            f = np.repeat(np.repeat(f, scale, axis=0), scale, axis=1)
        frames.append(f)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        iio.imwrite(out, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    else:
        # libx264 wants even sizes
        h, w = frames[0].shape[:2]
        frames = [f[: h - h % 2, : w - w % 2] for f in frames]
        iio.imwrite(out, np.stack(frames), extension=".mp4", fps=fps)
    return out
