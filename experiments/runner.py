"""The claims' rollout runner: play a checkpoint (or random) in a fresh real env and keep
per-step actions, values, probabilities, events, poses and view flags (:class:`Rollout`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Context:
    """Budgets and where to put things."""

    out_dir: Path
    episodes: int | None = None
    """Override of every claim's eval episodes (None: claims.yaml)."""
    max_steps: int | None = None
    """Override of every claim's max steps per episode."""
    seed: int = 0
    device: str = "cpu"
    log: Callable[[str], None] = print

    def budget(self, spec: dict[str, Any]) -> tuple[int, int]:
        ev = spec.get("eval") or {}
        return (int(self.episodes or ev.get("episodes", 4)),
                int(self.max_steps or ev.get("max_steps", 500)))


@dataclass
class Rollout:
    """One played episode: per-step arrays (index t = observation t and the action on it)."""

    actions: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    probs: list[list[float]] = field(default_factory=list)
    events: list[list[dict]] = field(default_factory=list)
    """events[t]: caused by actions[t]."""
    poses: list[dict | None] = field(default_factory=list)
    flags: dict[str, list[Any]] = field(default_factory=dict)
    """Info keys of the observation's info (``tree_in_view``, ``reward_button_in_view``...)."""
    final_info: dict[str, Any] = field(default_factory=dict)
    obs: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    """rewards[t]: the (observed) reward for actions[t], what the critic was trained on."""
    observed_return: float = 0.0
    hidden_performance: float = 0.0

    def count(self, pred: Callable[[dict], bool]) -> int:
        return sum(1 for evs in self.events for e in evs if pred(e))


FLAG_KEYS = ("tree_in_view", "reward_button_in_view", "off_switch_in_view", "lever_in_view",
             "overseer_in_view", "overseer_dist")


def play(policy: str | Path, env_id: str, n_episodes: int, max_steps: int, seed: int = 0,
         env_kwargs: dict | None = None, keep_obs: int = 0, device: str = "cpu",
         fwd_hooks: Sequence[Any] = ()) -> tuple[list[Rollout], list[str] | None]:
    """Play ``n_episodes`` of a checkpoint (sampling) or ``"random"`` in a fresh real env, and
    return per-step actions, values, probabilities, events, poses and view flags.
    ``keep_obs``: keep up to this many policy observations (for the mirror test)."""
    import torch

    from mtsandbox.interp.data import ObsPipeline, make_env, run_env_episodes
    from mtsandbox.interp.hooks import HookedPolicy

    torch.set_num_threads(1)  # the server needs the other core
    env = make_env(env_id, {"max_episode_steps": max_steps, **(env_kwargs or {})})
    try:
        meanings = (list(env.unwrapped.get_action_meanings())
                    if hasattr(env.unwrapped, "get_action_meanings") else None)
        hooked = None if str(policy) == "random" else HookedPolicy.from_checkpoint(policy, device)
        if hooked is not None and hooked.action_meanings is None:
            hooked.action_meanings = meanings
        rng = np.random.default_rng(seed)
        n_act = int(env.action_space.n)
        eps: list[Rollout] = []
        last: dict[str, Any] = {}

        def act(o):
            if hooked is None:
                last["v"], last["p"] = math.nan, []
                return int(rng.integers(n_act))
            with torch.no_grad():
                logits, value = hooked(o)
            p = torch.softmax(logits, -1)[0].cpu().numpy().astype(float)
            last["v"], last["p"] = float(value.reshape(-1)[0]), p.round(5).tolist()
            return int(rng.choice(len(p), p=p / p.sum()))

        def on_step(ep, t, obs, frame, a, info, info2, sem):
            while len(eps) <= ep:
                eps.append(Rollout())
            r = eps[ep]
            r.actions.append(int(a))
            r.values.append(last.get("v", math.nan))
            r.probs.append(last.get("p", []))
            r.events.append([e for e in (info2.get("events") or []) if isinstance(e, dict)])
            r.poses.append(info.get("pose"))
            for k in FLAG_KEYS:
                if k in info:
                    r.flags.setdefault(k, []).append(info[k])
            r.rewards.append(float(info2.get("observed_reward", 0.0)))
            r.observed_return += float(info2.get("observed_reward", 0.0))
            r.hidden_performance += float(info2.get("hidden_performance", 0.0))
            r.final_info = {k: v for k, v in info2.items()
                            if k not in ("events", "pose", "bodies", "terminal_observation")}
            if keep_obs and sum(len(x.obs) for x in eps) < keep_obs:
                r.obs.append(np.asarray(obs).copy())

        ctx_hooks = hooked.hooks(list(fwd_hooks)) if (hooked is not None and fwd_hooks) else None
        pipe = ObsPipeline.for_hooked(hooked)
        if ctx_hooks is not None:
            with ctx_hooks:
                run_env_episodes(env, act, n_episodes, max_steps, seed, pipe, on_step)
        else:
            run_env_episodes(env, act, n_episodes, max_steps, seed, pipe, on_step)
        return eps, (hooked.action_meanings if hooked is not None else None) or meanings
    finally:
        env.close()
