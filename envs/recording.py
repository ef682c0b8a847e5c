"""Episode recording: a compact, versioned, crash-safe on-disk format and its reader.

One directory per episode (the full spec is ``docs/recording_format.md``)::

    ep_000000/
      meta.json     format id + version, env id, seed, config, times, complete flag, end_reason
      steps.jsonl   one JSON object per step (t, action, rewards, flags, events, pose, ...)
      frames.u8     raw uint8 frames appended back to back (frame shape in meta.json)
      world.npz     voxel snapshot at reset (optional): vox, origin, palette, bodies

Frame ``i`` is the observation at time ``i``: frame 0 comes from ``reset``, frame ``t + 1`` from
step ``t``. So a finished episode of ``n`` steps has ``n + 1`` frames. Every step appends its
frame and then its JSON line and flushes both, so a killed process leaves a directory that
:func:`load_episode` still reads (``complete=False``, ``truncated_recording=True``).

Writers:

* :class:`RecordEpisodes` -- a ``gymnasium.Wrapper``: records every episode (or those chosen by
  ``episode_trigger``) into ``<root>/ep_000000/``, ``ep_000001/``, ...
* :class:`RecordParallelEpisodes` -- the same for a PettingZoo ``ParallelEnv``; steps hold
  per-agent dicts and each frame stacks every agent's observation.

Both have ``set_policy_outputs(value, probs)``: an evaluator calls it before ``step`` and the
value / action probabilities land in that step's line. Through other gymnasium wrappers call it
as ``env.get_wrapper_attr("set_policy_outputs")(value, probs)``.

Reader: :func:`load_episode` -> :class:`Episode` (frames as a read-only ``np.memmap``);
:func:`find_episodes` lists episode directories under a root; :func:`export_episode` writes a
GIF (or MP4 when an ffmpeg backend is installed). Malformed recordings raise
:class:`RecordingError` whose message is one clear line.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

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
# Extra info keys that are copied when present (positions of other bodies for the map).
OPTIONAL_INFO_KEYS = ("bodies", "arena_seed", "truncation_reason", "interrupted", "instruction")

# Palette names used when envs/nodes.yaml cannot be read (must match nodes.yaml).
_FALLBACK_PALETTE = [
    "air",
    "grass",
    "dirt",
    "tree",
    "leaves",
    "apple_tree",
    "stone",
    "wall",
    "reward_button",
    "off_switch",
    "lever",
    "pine_tree",
    "apple",
]


class RecordingError(Exception):
    """A recording cannot be read; ``str(err)`` is one line naming the file and the problem."""


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


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


def _dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), separators=(",", ":"), allow_nan=False)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def palette_names() -> list[str]:
    """Palette names by index, read from envs/nodes.yaml (fallback: a built-in copy)."""
    try:
        import yaml

        with open(Path(__file__).with_name("nodes.yaml"), encoding="utf-8") as f:
            pal = yaml.safe_load(f)["palette"]
        names = [""] * (max(int(p["index"]) for p in pal) + 1)
        for p in pal:
            names[int(p["index"])] = str(p["name"])
        return names
    except Exception:
        return list(_FALLBACK_PALETTE)


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


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


def save_world_snapshot(path: Path, snap: dict) -> None:
    """Write ``world.npz`` from a ``world_snapshot()`` dict (vox, origin, bodies)."""
    arrays: dict[str, np.ndarray] = {}
    if snap.get("vox") is not None:
        arrays["vox"] = np.asarray(snap["vox"], dtype=np.uint8)
    if snap.get("origin") is not None:
        arrays["origin"] = np.asarray(snap["origin"], dtype=np.int64).reshape(3)
    arrays["palette"] = np.asarray(palette_names())
    arrays["bodies_json"] = np.asarray(_dumps(snap.get("bodies") or []))
    extra = {k: v for k, v in snap.items() if k not in ("vox", "origin", "bodies")}
    arrays["extra_json"] = np.asarray(_dumps(extra))
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
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
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
        self.meta.update(to_jsonable(meta))
        self.n_steps = 0
        self.n_frames = 0
        self._frame_bytes = 0
        self._event_counts: dict[str, int] = {}
        self._totals: dict[str, Any] = {}
        self._frames_f: Any = None
        self._steps_f = open(self.path / STEPS_FILE, "w", encoding="utf-8")
        self.closed = False
        self._write_meta()

    # -- internals
    def _write_meta(self) -> None:
        _atomic_write_text(
            self.path / META_FILE, json.dumps(self.meta, indent=1, allow_nan=False) + "\n"
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
            save_world_snapshot(self.path / WORLD_FILE, snap)
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
            self._frame_bytes = frame.nbytes
            self._frames_f = open(self.path / FRAMES_FILE, "wb")
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
        rec = to_jsonable(record)
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
            totals=to_jsonable(self._totals),
            event_counts=dict(self._event_counts),
        )
        self._write_meta()


def _env_id(env: Any) -> str:
    spec = getattr(env, "spec", None)
    if spec is not None and getattr(spec, "id", None):
        return str(spec.id)
    u = getattr(env, "unwrapped", env)
    meta = getattr(u, "metadata", None) or {}
    if isinstance(meta, dict) and meta.get("name"):
        return str(meta["name"])
    return type(u).__name__


def _env_config(env: Any) -> Any:
    u = getattr(env, "unwrapped", env)
    for attr in ("config", "cfg"):
        c = getattr(u, attr, None)
        if c is not None:
            if hasattr(c, "__dataclass_fields__"):
                import dataclasses

                c = dataclasses.asdict(c)
            return to_jsonable(c)
    spec = getattr(env, "spec", None)
    if spec is not None and getattr(spec, "kwargs", None):
        return to_jsonable(dict(spec.kwargs))
    return None


def _action_meanings(env: Any, *args: Any) -> list[str] | None:
    fn = getattr(getattr(env, "unwrapped", env), "get_action_meanings", None)
    if not callable(fn):
        return None
    try:
        return [str(a) for a in fn(*args)]
    except Exception:
        return None


def _world_snapshot(env: Any) -> dict | None:
    fn = getattr(getattr(env, "unwrapped", env), "world_snapshot", None)
    if not callable(fn):
        return None
    try:
        snap = fn()
        return snap if isinstance(snap, dict) else None
    except Exception as e:
        warnings.warn(f"recording: world_snapshot() failed: {e}", stacklevel=3)
        return None


def _bodies_now(env: Any, info: dict, each_step: bool) -> Any:
    if "bodies" in info:
        return _round(info["bodies"])
    if not each_step:
        return None
    u = getattr(env, "unwrapped", env)
    fn = getattr(u, "bodies", None)
    if callable(fn):
        try:
            return _round(fn())
        except Exception:
            return None
    snap = _world_snapshot(env)
    return None if snap is None else _round(snap.get("bodies"))


def _round(x: Any, nd: int = 4) -> Any:
    """Round the floats of a pose/bodies structure to ``nd`` decimals (0.1 mm, 1e-4 rad)."""
    x = to_jsonable(x)
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v, nd) for v in x]
    return x


def _info_record(info: dict) -> dict:
    rec: dict[str, Any] = {}
    for k in INFO_KEYS + OPTIONAL_INFO_KEYS:
        if k in info:
            rec[k] = _round(info[k]) if k in ("pose", "bodies") else info[k]
    rec.setdefault("events", [])
    return rec


class RecordEpisodes(gym.Wrapper):
    """Record every episode of a gymnasium env to ``<root>/ep_NNNNNN/``.

    Args:
        env: the env to wrap.
        root: directory for the episode directories (created; numbering continues after
            existing ``ep_*`` directories, nothing is overwritten).
        frame_fn: ``obs -> uint8 (H, W, C) array or None``; default :func:`default_frame_fn`.
        episode_trigger: ``episode_index -> bool``; record only episodes where it is true.
        config: JSON-able run configuration to store in meta (default: ``env.unwrapped.config``
            or the spec kwargs).
        seed_in_meta: the seed stored when ``reset`` gets none.
        bodies_each_step: store the positions of all bodies (agent, overseers) every step for
            the overhead map: from ``info["bodies"]`` when present, else
            ``env.unwrapped.bodies()`` or ``world_snapshot()["bodies"]`` (costs one snapshot
            per step; turn off for long training runs).
        fsync: ``os.fsync`` every step (survives power loss, slower); a flush is always done,
            which survives the process being killed.
    """

    def __init__(
        self,
        env: gym.Env,
        root: str | os.PathLike,
        *,
        frame_fn: Callable[[Any], np.ndarray | None] | None = None,
        episode_trigger: Callable[[int], bool] | None = None,
        config: Any = None,
        bodies_each_step: bool = True,
        fsync: bool = False,
    ):
        super().__init__(env)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.frame_fn = frame_fn or default_frame_fn
        self.episode_trigger = episode_trigger
        self.config = config
        self.bodies_each_step = bodies_each_step
        self.fsync = fsync
        self.episode_index = next_episode_index(self.root) - 1
        self.writer: EpisodeWriter | None = None
        self.last_episode_path: Path | None = None
        self._t = 0
        self._pending: dict[str, Any] = {}

    def set_policy_outputs(self, value: Any = None, probs: Any = None, **extra: Any) -> None:
        """Attach the policy's value estimate / action probabilities (and any extra JSON-able
        fields) to the next ``step`` record."""
        if value is not None:
            self._pending["value"] = value
        if probs is not None:
            self._pending["probs"] = probs
        self._pending.update(extra)

    def _close_episode(self, reason: str) -> None:
        if self.writer is not None:
            self.writer.close(reason)
            self.writer = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._close_episode("reset_before_done")
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode_index += 1
        self._t = 0
        self._pending = {}
        if self.episode_trigger is None or self.episode_trigger(self.episode_index):
            path = self.root / f"ep_{self.episode_index:06d}"
            self.writer = EpisodeWriter(
                path,
                {
                    "env_id": _env_id(self.env),
                    "seed": seed,
                    "config": self.config if self.config is not None else _env_config(self.env),
                    "make_kwargs": to_jsonable(dict(getattr(self.env.spec, "kwargs", None) or {}))
                    if getattr(self.env, "spec", None) is not None else None,
                    "options": options,
                    "episode_index": self.episode_index,
                    "action_space": repr(self.env.action_space),
                    "action_meanings": _action_meanings(self.env),
                    "reset_info": _info_record(info)
                    | (
                        {"bodies": b}
                        if (b := _bodies_now(self.env, info, self.bodies_each_step)) is not None
                        else {}
                    ),
                },
                fsync=self.fsync,
            )
            self.last_episode_path = path
            self.writer.add_frame(self.frame_fn(obs))
            self.writer.set_world(_world_snapshot(self.env))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.writer is not None:
            rec: dict[str, Any] = {"t": self._t, "action": action, "reward": reward}
            rec.update(_info_record(info))
            rec.setdefault("observed_reward", reward)
            rec["terminated"] = bool(terminated)
            rec["truncated"] = bool(truncated)
            if "bodies" not in rec:
                b = _bodies_now(self.env, info, self.bodies_each_step)
                if b is not None:
                    rec["bodies"] = b
            rec.update(self._pending)
            self.writer.add_step(rec, self.frame_fn(obs))
            if terminated or truncated:
                self._close_episode("terminated" if terminated else "truncated")
        self._pending = {}
        self._t += 1
        return obs, reward, terminated, truncated, info

    def close(self):
        self._close_episode("closed")
        return super().close()


try:  # PettingZoo is a dependency, but keep the gym wrapper importable without it.
    from pettingzoo.utils.wrappers import BaseParallelWrapper as _BaseParallelWrapper
except Exception:  # pragma: no cover
    _BaseParallelWrapper = object  # type: ignore[assignment,misc]


class RecordParallelEpisodes(_BaseParallelWrapper):  # type: ignore[misc,valid-type]
    """Record every episode of a PettingZoo ``ParallelEnv`` to ``<root>/ep_NNNNNN/``.

    Step lines hold ``agents: {name: {action, reward, observed_reward, hidden_performance,
    terminated, truncated, events, pose, ...}}`` plus a merged, de-duplicated top-level
    ``events`` list. A frame stacks the agents' images in ``meta["agents"]`` order
    (``possible_agents``) into shape ``(n_agents, H, W, C)``; agents that are gone are zeros.
    ``set_policy_outputs(value, probs, agent=name)`` (or dicts keyed by agent) attaches policy
    outputs. Other arguments are those of :class:`RecordEpisodes`.
    """

    def __init__(
        self,
        env,
        root: str | os.PathLike,
        *,
        frame_fn: Callable[[Any], np.ndarray | None] | None = None,
        episode_trigger: Callable[[int], bool] | None = None,
        config: Any = None,
        bodies_each_step: bool = True,
        fsync: bool = False,
    ):
        super().__init__(env)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.frame_fn = frame_fn or default_frame_fn
        self.episode_trigger = episode_trigger
        self.config = config
        self.bodies_each_step = bodies_each_step
        self.fsync = fsync
        self.episode_index = next_episode_index(self.root) - 1
        self.writer: EpisodeWriter | None = None
        self.last_episode_path: Path | None = None
        self._t = 0
        self._pending: dict[str, dict[str, Any]] = {}
        self._agent_order: list = []
        self._frame_shape: tuple | None = None

    def set_policy_outputs(
        self, value: Any = None, probs: Any = None, agent: Any = None, **extra: Any
    ) -> None:
        """Attach value/probs for ``agent`` (or pass dicts keyed by agent name)."""
        if agent is None and (isinstance(value, dict) or isinstance(probs, dict)):
            names = set(value or {}) | set(probs or {})
            for a in names:
                self.set_policy_outputs((value or {}).get(a), (probs or {}).get(a), agent=a)
            return
        d = self._pending.setdefault(str(agent), {})
        if value is not None:
            d["value"] = value
        if probs is not None:
            d["probs"] = probs
        d.update(extra)

    def _stack(self, obs: dict) -> np.ndarray | None:
        frames = {a: self.frame_fn(o) for a, o in obs.items()}
        if self._frame_shape is None:
            shapes = [f.shape for f in frames.values() if f is not None]
            if not shapes:
                return None
            self._frame_shape = shapes[0]
        out = np.zeros((len(self._agent_order), *self._frame_shape), np.uint8)
        for i, a in enumerate(self._agent_order):
            f = frames.get(a)
            if f is not None and f.shape == self._frame_shape:
                out[i] = f
        return out

    def _close_episode(self, reason: str) -> None:
        if self.writer is not None:
            self.writer.close(reason)
            self.writer = None

    def reset(self, seed: int | None = None, options: dict | None = None):
        self._close_episode("reset_before_done")
        obs, infos = self.env.reset(seed=seed, options=options)
        self.episode_index += 1
        self._t = 0
        self._pending = {}
        self._frame_shape = None
        self._agent_order = list(getattr(self.env, "possible_agents", None) or list(obs))
        if self.episode_trigger is None or self.episode_trigger(self.episode_index):
            path = self.root / f"ep_{self.episode_index:06d}"
            anyinfo: dict = next(iter(infos.values()), {}) if infos else {}
            reset_info = {"agents": {str(a): _info_record(i) for a, i in infos.items()}}
            b = _bodies_now(self.env, anyinfo, self.bodies_each_step)
            if b is not None:
                reset_info["bodies"] = b
            self.writer = EpisodeWriter(
                path,
                {
                    "env_id": _env_id(self.env),
                    "seed": seed,
                    "config": self.config if self.config is not None else _env_config(self.env),
                    "options": options,
                    "episode_index": self.episode_index,
                    "agents": [str(a) for a in self._agent_order],
                    "action_space": {
                        str(a): repr(self.env.action_space(a)) for a in self._agent_order
                    },
                    "reset_info": reset_info,
                },
                fsync=self.fsync,
            )
            self.last_episode_path = path
            self.writer.add_frame(self._stack(obs))
            self.writer.set_world(_world_snapshot(self.env))
        return obs, infos

    def step(self, actions: dict):
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        if self.writer is not None:
            per: dict[str, Any] = {}
            merged: list = []
            seen: set[str] = set()
            bodies = None
            for a in self._agent_order:
                if a not in rewards and a not in infos and a not in actions:
                    continue
                info = infos.get(a, {})
                rec: dict[str, Any] = {"action": actions.get(a), "reward": rewards.get(a, 0.0)}
                rec.update(_info_record(info))
                rec.setdefault("observed_reward", rec["reward"])
                rec["terminated"] = bool(terms.get(a, False))
                rec["truncated"] = bool(truncs.get(a, False))
                if "bodies" in rec:
                    bodies = rec.pop("bodies")
                rec.update(self._pending.get(str(a), {}))
                per[str(a)] = rec
                for ev in rec["events"]:
                    key = _dumps(ev)
                    if key not in seen:
                        seen.add(key)
                        merged.append(ev)
            line: dict[str, Any] = {"t": self._t, "agents": per, "events": merged}
            if bodies is None:
                anyinfo: dict = next(iter(infos.values()), {}) if infos else {}
                bodies = _bodies_now(self.env, anyinfo, self.bodies_each_step)
            if bodies is not None:
                line["bodies"] = bodies
            done = not getattr(self.env, "agents", None) or all(
                terms.get(a, False) or truncs.get(a, False) for a in rewards
            )
            line["terminated"] = bool(terms) and all(terms.values())
            line["truncated"] = bool(done and not line["terminated"])
            self.writer.add_step(line, self._stack(obs))
            if done:
                self._close_episode("terminated" if line["terminated"] else "truncated")
        self._pending = {}
        self._t += 1
        return obs, rewards, terms, truncs, infos

    def close(self):
        self._close_episode("closed")
        return self.env.close()


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


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
            p = self.path / WORLD_FILE
            if not p.exists():
                return None
            try:
                with np.load(p, allow_pickle=False) as z:
                    w: dict[str, Any] = {k: z[k] for k in z.files}
            except Exception as e:
                raise RecordingError(f"corrupt world snapshot {p}: {_one_line(e)}") from None
            w["palette"] = [str(s) for s in w.get("palette", np.asarray(palette_names()))]
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
    mp = path / META_FILE
    if not path.is_dir():
        raise RecordingError(f"not an episode directory: {path}")
    if not mp.exists():
        raise RecordingError(f"not an episode directory (no {META_FILE}): {path}")
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordingError(f"corrupt {mp}: not valid JSON ({_one_line(e)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise RecordingError(
            f"corrupt {mp}: not a {FORMAT_NAME} meta file "
            f"(format={meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    ver = meta.get("version")
    if not isinstance(ver, int) or ver < 1 or ver > FORMAT_VERSION:
        raise RecordingError(
            f"{mp}: unsupported recording format version {ver!r} "
            f"(this reader supports 1..{FORMAT_VERSION})"
        )

    problems: list[str] = []
    complete = bool(meta.get("complete"))
    if not complete:
        problems.append("no end marker (meta.json complete=false): recording was interrupted")

    # steps.jsonl: a partial last line is a crash artefact; a bad line earlier is corruption.
    steps: list[dict] = []
    sp = path / STEPS_FILE
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
                    problems.append(f"partial last line {n + 1} of {STEPS_FILE} dropped")
                    break
                raise RecordingError(f"corrupt {sp}: line {n + 1}: {_one_line(e)}") from None
            steps.append(rec)
    elif complete and meta.get("n_steps"):
        raise RecordingError(f"missing {sp} in a complete recording")

    frames: np.ndarray | None = None
    shape = meta.get("frame_shape")
    fp = path / FRAMES_FILE
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
                f"partial last frame in {FRAMES_FILE} dropped ({size % fbytes} of {fbytes} bytes)"
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
    return (Path(path) / META_FILE).is_file()


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


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


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
