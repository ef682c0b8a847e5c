"""Recording wrappers: every episode of a gymnasium env (:class:`RecordEpisodes`) or a
PettingZoo ``ParallelEnv`` (:class:`RecordParallelEpisodes`) into ``<root>/ep_NNNNNN/``.

Both have ``set_policy_outputs(value, probs)``: an evaluator calls it before ``step`` and the
value / action probabilities land in that step's line. Through other gymnasium wrappers call it
as ``env.get_wrapper_attr("set_policy_outputs")(value, probs)``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mtsandbox.tools.recording.format import (
    INFO_KEYS,
    OPTIONAL_INFO_KEYS,
    VIEW_LABEL_SUFFIX,
    default_frame_fn,
    dumps,
    next_episode_index,
    to_jsonable,
)
from mtsandbox.tools.recording.writer import EpisodeWriter


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
    for k, v in info.items():
        if k.endswith(VIEW_LABEL_SUFFIX) and k not in rec and isinstance(v, (bool, np.bool_)):
            rec[k] = bool(v)
    rec.setdefault("events", [])
    return rec


class _Recorder:
    """What both wrappers share: the root, episode numbering and trigger, the open writer and
    the policy outputs waiting for the next step. Arguments are those of
    :class:`RecordEpisodes`."""

    env: Any

    def _init_recorder(self, root: str | os.PathLike, *,
                       frame_fn: Callable[[Any], np.ndarray | None] | None = None,
                       episode_trigger: Callable[[int], bool] | None = None, config: Any = None,
                       bodies_each_step: bool = True, fsync: bool = False) -> None:
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

    def _close_episode(self, reason: str) -> None:
        if self.writer is not None:
            self.writer.close(reason)
            self.writer = None

    def _next_episode(self) -> Path | None:
        """Count the episode just reset; its directory when it is recorded."""
        self.episode_index += 1
        self._t = 0
        self._pending = {}
        if self.episode_trigger is None or self.episode_trigger(self.episode_index):
            return self.root / f"ep_{self.episode_index:06d}"
        return None

    def _open_episode(self, path: Path, seed: int | None, meta: dict[str, Any],
                      frame: np.ndarray | None) -> None:
        config = self.config if self.config is not None else _env_config(self.env)
        self.writer = EpisodeWriter(
            path, {"env_id": _env_id(self.env), "seed": seed, "config": config, **meta},
            fsync=self.fsync)
        self.last_episode_path = path
        self.writer.add_frame(frame)
        self.writer.set_world(_world_snapshot(self.env))

    def _end_step(self, done: bool, terminated: bool) -> None:
        if done:
            self._close_episode("terminated" if terminated else "truncated")
        self._pending = {}
        self._t += 1


class RecordEpisodes(_Recorder, gym.Wrapper):
    """Record every episode of a gymnasium env to ``<root>/ep_NNNNNN/``.

    Args:
        env: the env to wrap.
        root: directory for the episode directories (created; numbering continues after
            existing ``ep_*`` directories, nothing is overwritten).
        frame_fn: ``obs -> uint8 (H, W, C) array or None``; default :func:`default_frame_fn`.
        episode_trigger: ``episode_index -> bool``; record only episodes where it is true.
        config: JSON-able run configuration to store in meta (default: ``env.unwrapped.config``
            or the spec kwargs).
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
        gym.Wrapper.__init__(self, env)
        self._init_recorder(root, frame_fn=frame_fn, episode_trigger=episode_trigger,
                            config=config, bodies_each_step=bodies_each_step, fsync=fsync)

    def set_policy_outputs(self, value: Any = None, probs: Any = None, **extra: Any) -> None:
        """Attach the policy's value estimate / action probabilities (and any extra JSON-able
        fields) to the next ``step`` record."""
        if value is not None:
            self._pending["value"] = value
        if probs is not None:
            self._pending["probs"] = probs
        self._pending.update(extra)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._close_episode("reset_before_done")
        obs, info = self.env.reset(seed=seed, options=options)
        path = self._next_episode()
        if path is not None:
            reset_info = _info_record(info)
            b = _bodies_now(self.env, info, self.bodies_each_step)
            if b is not None:
                reset_info["bodies"] = b
            spec = getattr(self.env, "spec", None)
            self._open_episode(path, seed, {
                "make_kwargs": to_jsonable(dict(getattr(spec, "kwargs", None) or {}))
                if spec is not None else None,
                "options": options,
                "episode_index": self.episode_index,
                "action_space": repr(self.env.action_space),
                "action_meanings": _action_meanings(self.env),
                "reset_info": reset_info,
            }, self.frame_fn(obs))
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
            self._end_step(bool(terminated or truncated), bool(terminated))
        else:
            self._end_step(False, False)
        return obs, reward, terminated, truncated, info

    def close(self):
        self._close_episode("closed")
        return super().close()


try:  # PettingZoo is a dependency, but keep the gym wrapper importable without it.
    from pettingzoo.utils.wrappers import BaseParallelWrapper as _BaseParallelWrapper
except Exception:  # pragma: no cover
    _BaseParallelWrapper = object  # type: ignore[assignment,misc]


class RecordParallelEpisodes(_Recorder, _BaseParallelWrapper):  # type: ignore[misc,valid-type]
    """Record every episode of a PettingZoo ``ParallelEnv`` to ``<root>/ep_NNNNNN/``.

    Step lines hold ``agents: {name: {action, reward, observed_reward, hidden_performance,
    terminated, truncated, events, pose, ...}}`` plus a merged, de-duplicated top-level
    ``events`` list. A frame stacks the agents' images in ``meta["agents"]`` order
    (``possible_agents``) into shape ``(n_agents, H, W, C)``; agents that are gone are zeros.
    ``set_policy_outputs(value, probs, agent=name)`` (or dicts keyed by agent) attaches policy
    outputs. Other arguments are those of :class:`RecordEpisodes`.
    """

    def __init__(self, env, root: str | os.PathLike, **options: Any):
        _BaseParallelWrapper.__init__(self, env)
        self._init_recorder(root, **options)
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

    def reset(self, seed: int | None = None, options: dict | None = None):
        self._close_episode("reset_before_done")
        obs, infos = self.env.reset(seed=seed, options=options)
        path = self._next_episode()
        self._frame_shape = None
        self._agent_order = list(getattr(self.env, "possible_agents", None) or list(obs))
        if path is not None:
            anyinfo: dict = next(iter(infos.values()), {}) if infos else {}
            reset_info = {"agents": {str(a): _info_record(i) for a, i in infos.items()}}
            b = _bodies_now(self.env, anyinfo, self.bodies_each_step)
            if b is not None:
                reset_info["bodies"] = b
            self._open_episode(path, seed, {
                "options": options,
                "episode_index": self.episode_index,
                "agents": [str(a) for a in self._agent_order],
                "action_space": {
                    str(a): repr(self.env.action_space(a)) for a in self._agent_order
                },
                "reset_info": reset_info,
            }, self._stack(obs))
        return obs, infos

    def step(self, actions: dict):
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        if self.writer is None:
            self._end_step(False, False)
            return obs, rewards, terms, truncs, infos
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
                key = dumps(ev)
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
        self._end_step(done, line["terminated"])
        return obs, rewards, terms, truncs, infos

    def close(self):
        self._close_episode("closed")
        return self.env.close()
