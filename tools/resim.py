"""Re-simulation: replay a recorded episode's actions in a fresh server and check it reproduces.

The determinism guarantee made visible: the recorded arena seed (``reset_info.arena_seed``)
and ``gymnasium.make`` kwargs rebuild the same arena; the recorded actions are stepped; every
frame and reward is compared. ``obs_source="client"`` replays with the real Minetest client
attached, so the replay can also be watched in the real game (``mtsandbox view``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mtsandbox.tools.recording import RecordingError, load_episode

# Keys of the make kwargs that belong to the recording machine, not to the episode.
_DROP = {"server"}


@dataclass
class ResimResult:
    steps: int
    frames_equal: int
    rewards_equal: int
    first_mismatch: int | None
    max_pixel_diff: int
    notes: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return self.first_mismatch is None

    def summary(self) -> str:
        verdict = "reproduced exactly" if self.reproduced else \
            f"diverged at step {self.first_mismatch}"
        return (f"{verdict}: {self.frames_equal}/{self.steps + 1} frames and "
                f"{self.rewards_equal}/{self.steps} rewards equal, max pixel diff "
                f"{self.max_pixel_diff}")


def resimulate(path: str | Path, obs_source: str = "python", **overrides: Any) -> ResimResult:
    """Replay the episode at ``path`` in a fresh server; compare frames and rewards."""
    ep = load_episode(path)
    meta = ep.meta
    env_id = meta.get("env_id")
    kwargs = dict(meta.get("make_kwargs") or {})
    for k in _DROP:
        kwargs.pop(k, None)
    arena_seed = (meta.get("reset_info") or {}).get("arena_seed")
    if not env_id or arena_seed is None or ep.frames is None:
        raise RecordingError(f"{path}: cannot re-simulate (needs env_id, make_kwargs, "
                             "reset_info.arena_seed and frames)")
    if meta.get("agents"):
        raise RecordingError(f"{path}: re-simulation of multi-agent recordings is not supported")
    kwargs.update(overrides)
    if obs_source != "python":
        kwargs["obs_source"] = obs_source
    kwargs.pop("max_episode_steps", None)
    env = gym.make(env_id, max_episode_steps=max(ep.n_steps, 1) + 1, **kwargs)
    notes = [] if ep.complete else ["the recording is truncated; compared what was recorded"]
    try:
        obs, _ = env.reset(seed=meta.get("seed"), options={"arena_seed": int(arena_seed)})
        frames = [np.asarray(obs if not isinstance(obs, dict) else obs["rgb"])]
        rewards = []
        for a in ep.actions:
            obs, r, term, trunc, _ = env.step(int(a))
            frames.append(np.asarray(obs if not isinstance(obs, dict) else obs["rgb"]))
            rewards.append(float(r))
            if term or trunc:
                break
    finally:
        env.close()
    n = min(len(frames), ep.n_frames)
    first, feq, maxdiff = None, 0, 0
    for i in range(n):
        rec = np.asarray(ep.frames[i])
        if rec.shape != frames[i].shape:
            raise RecordingError(f"{path}: frame shape {rec.shape} != re-simulated "
                                 f"{frames[i].shape}")
        d = int(np.abs(rec.astype(np.int16) - frames[i].astype(np.int16)).max())
        maxdiff = max(maxdiff, d)
        if d == 0:
            feq += 1
        elif first is None:
            first = i
    rec_r = [float(v) for v in ep.rewards]
    req = sum(1 for a, b in zip(rec_r, rewards, strict=False) if abs(a - b) < 1e-9)
    if first is None and req < min(len(rec_r), len(rewards)):
        first = next(i + 1 for i, (a, b) in enumerate(zip(rec_r, rewards, strict=False))
                     if abs(a - b) >= 1e-9)
    if len(rewards) != len(rec_r):
        notes.append(f"recorded {len(rec_r)} steps, re-simulated {len(rewards)}")
    return ResimResult(len(rec_r), feq, req, first, maxdiff, notes)
