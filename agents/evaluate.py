"""Evaluate a checkpoint (or a uniformly random policy) for N episodes.

Programmatic::

    from mtsandbox.agents.evaluate import evaluate
    report = evaluate("runs/<run>/checkpoints/final", n_episodes=10)
    report = evaluate("random", env_id="MinetestSandbox/TreePunch-v0", n_episodes=10)
    report.print_table()
    report.save_json("eval.json")
    report.summary["hidden_performance"]["mean"], report.summary["hidden_performance"]["ci95"]

CLI: ``mtsandbox eval CHECKPOINT|random [--env-id ID] [--episodes N] [--json out.json]``.

Per-episode metrics: ``observed_return`` (sum of ``info["observed_reward"]``),
``hidden_performance`` (sum of ``info["hidden_performance"]``), ``length`` and
``events/<kind>`` (count of ``info["events"]`` entries of that kind). The summary gives mean,
std, min, max and the half-width of a 95% Student-t confidence interval for each.

Recording: ``record_dir`` wraps the env in ``mtsandbox.tools.recording.RecordEpisodes`` (exactly
the ``n_episodes`` evaluated episodes are written, with the policy's value and action
probabilities per step); ``env_wrapper`` applies any other gymnasium wrapper right after
``gymnasium.make``; ``step_hook`` is called once per env step with a :class:`StepRecord`
(single-env view: the observation the action was chosen on, the action, reward, info, done).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def t_critical_95(df: float) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (scipy); NaN below 1."""
    if not df >= 1:
        return math.nan
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def mean_ci95(values: Sequence[float]) -> dict[str, float | int | None]:
    """mean, std (ddof=1), ci95 half-width, min, max, n. ``None`` where undefined (n < 2)."""
    arr = np.asarray(values, dtype=float)
    n = int(arr.size)
    if n == 0:
        return {"mean": None, "ci95": None, "std": None, "min": None, "max": None, "n": 0}
    std = float(arr.std(ddof=1)) if n > 1 else None
    ci = t_critical_95(n - 1) * std / math.sqrt(n) if std is not None else None
    return {"mean": float(arr.mean()), "ci95": ci, "std": std, "min": float(arr.min()),
            "max": float(arr.max()), "n": n}


@dataclass
class EpisodeStats:
    """Totals of one finished episode."""

    observed_return: float = 0.0
    hidden_performance: float = 0.0
    length: int = 0
    events: Counter = field(default_factory=Counter)
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events"] = dict(self.events)
        return d


class EpisodeTracker:
    """Accumulates the info contract (``observed_reward``, ``hidden_performance``, ``events``)
    per env of a VecEnv and returns :class:`EpisodeStats` when episodes end."""

    def __init__(self, n_envs: int) -> None:
        self.current = [EpisodeStats() for _ in range(n_envs)]
        self.kinds: set[str] = set()

    def update(self, rewards: Sequence[float], dones: Sequence[bool],
               infos: Sequence[dict[str, Any]]) -> list[EpisodeStats]:
        finished = []
        for i, info in enumerate(infos):
            ep = self.current[i]
            ep.observed_return += float(info.get("observed_reward", rewards[i]))
            ep.hidden_performance += float(info.get("hidden_performance", 0.0))
            ep.length += 1
            for ev in info.get("events", ()) or ():
                kind = str(ev.get("kind", "unknown")) if isinstance(ev, dict) else str(ev)
                ep.events[kind] += 1
                self.kinds.add(kind)
            if dones[i]:
                ep.truncated = bool(info.get("TimeLimit.truncated", False))
                finished.append(ep)
                self.current[i] = EpisodeStats()
        return finished


@dataclass
class StepRecord:
    """What a recording hook gets each step (env 0 of the evaluation VecEnv)."""

    episode: int
    """Index of the episode being played (0-based)."""
    t: int
    """Step index within the episode (0-based) of this action."""
    obs: np.ndarray
    """Observation the action was chosen on, as the policy saw it (H, W, C) uint8
    (frame-stacked / grayscale when the checkpoint was trained so)."""
    action: int
    action_meaning: str | None
    reward: float
    info: dict[str, Any]
    """The env's step info (per the contract); on the last step it also has
    ``terminal_observation``."""
    done: bool


StepHook = Callable[[StepRecord], None]


def run_episodes(venv, act: Callable[[np.ndarray], np.ndarray], n_episodes: int,
                 step_hook: StepHook | None = None,
                 action_meanings: Sequence[str] | None = None,
                 before_step: Callable[[np.ndarray, np.ndarray], None] | None = None,
                 ) -> list[EpisodeStats]:
    """Play ``n_episodes`` episodes on ``venv`` (reset first) with ``act(obs_batch) -> actions``;
    ``before_step(obs, actions)`` runs just before each ``venv.step``."""
    tracker = EpisodeTracker(venv.num_envs)
    episodes: list[EpisodeStats] = []
    obs = venv.reset()
    ep_idx, t = 0, 0
    while len(episodes) < n_episodes:
        actions = np.asarray(act(obs))
        if before_step is not None:
            before_step(obs, actions)
        next_obs, rewards, dones, infos = venv.step(actions)
        if step_hook is not None:
            a = int(np.asarray(actions).reshape(venv.num_envs, -1)[0, 0])
            meaning = action_meanings[a] if action_meanings and a < len(action_meanings) else None
            step_hook(StepRecord(episode=ep_idx, t=t, obs=np.asarray(obs[0]), action=a,
                                 action_meaning=meaning, reward=float(rewards[0]),
                                 info=infos[0], done=bool(dones[0])))
            t += 1
            if dones[0]:
                ep_idx, t = ep_idx + 1, 0
        episodes.extend(tracker.update(rewards, dones, infos))
        obs = next_obs
    return episodes[:n_episodes]


def summarize(episodes: Sequence[EpisodeStats]) -> dict[str, dict[str, Any]]:
    """``{metric: mean_ci95(...)}`` for observed_return, hidden_performance, length and
    ``events/<kind>`` (episodes without that kind count 0)."""
    out = {
        "observed_return": mean_ci95([e.observed_return for e in episodes]),
        "hidden_performance": mean_ci95([e.hidden_performance for e in episodes]),
        "length": mean_ci95([e.length for e in episodes]),
    }
    kinds = sorted({k for e in episodes for k in e.events})
    for kind in kinds:
        out[f"events/{kind}"] = mean_ci95([e.events.get(kind, 0) for e in episodes])
    return out


@dataclass
class EvalReport:
    policy: str
    env_id: str
    n_episodes: int
    seed: int
    deterministic: bool
    wall_s: float
    env_steps: int
    episodes: list[EpisodeStats]
    summary: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "env_id": self.env_id, "n_episodes": self.n_episodes,
            "seed": self.seed, "deterministic": self.deterministic, "wall_s": self.wall_s,
            "env_steps": self.env_steps,
            "steps_per_s": self.env_steps / self.wall_s if self.wall_s > 0 else None,
            "summary": self.summary, "episodes": [e.to_dict() for e in self.episodes],
            "meta": self.meta,
        }

    def save_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return p

    def print_table(self, console=None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        table = Table(title=f"{self.policy} on {self.env_id}: {self.n_episodes} episodes "
                            f"(seed {self.seed}{', deterministic' if self.deterministic else ''})")
        for col in ("metric", "mean", "± 95% CI", "std", "min", "max"):
            table.add_column(col, justify="left" if col == "metric" else "right")

        def fmt(v):
            return "—" if v is None else f"{v:.3f}"

        for name, s in self.summary.items():
            table.add_row(name, fmt(s["mean"]), fmt(s["ci95"]), fmt(s["std"]), fmt(s["min"]),
                          fmt(s["max"]))
        console.print(table)
        sps = self.env_steps / self.wall_s if self.wall_s > 0 else float("nan")
        console.print(f"{self.env_steps} env steps in {self.wall_s:.1f} s ({sps:.1f} steps/s)")


def evaluate(
    policy: Any = "random",
    *,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    n_episodes: int = 10,
    seed: int = 0,
    deterministic: bool = False,
    step_hook: StepHook | None = None,
    device: str = "auto",
    venv=None,
    record_dir: str | Path | None = None,
    env_wrapper: Callable[[Any], Any] | None = None,
) -> EvalReport:
    """Run ``n_episodes`` of ``policy`` and summarise them.

    ``policy``: a checkpoint path (directory with ``model.zip`` + ``meta.json``, or a run
    directory), an already loaded SB3 model, or ``"random"``. ``env_id`` / ``env_kwargs``
    default to the checkpoint's; frame stacking and grayscale always follow the checkpoint.
    ``venv``: evaluate on this (already wrapped) VecEnv instead of building one; it is not closed.
    ``record_dir``: record the episodes there (see the module docstring); ``env_wrapper``: wrap
    the env (after ``gymnasium.make``, before grayscale); both ignored when ``venv`` is given.
    """
    from mtsandbox.agents.checkpoints import load_checkpoint
    from mtsandbox.agents.config import TrainConfig
    from mtsandbox.agents.devices import resolve_device
    from mtsandbox.agents.vecenv import close_quietly, get_action_meanings, make_vec_env

    if venv is None and resolve_device(device) == "cpu":
        # The env's server needs the other core: a second OpenMP thread spinning against it
        # made each inference ~7x slower on 2 cores.
        torch.set_num_threads(1)
    meta: dict[str, Any] = {}
    model = None
    if isinstance(policy, (str, Path)) and str(policy) == "random":
        policy_name = "random"
        cfg = TrainConfig(env_id=env_id or TrainConfig.env_id, env_kwargs=env_kwargs or {},
                          seed=seed, n_envs=1)
    else:
        if isinstance(policy, (str, Path)):
            model, meta = load_checkpoint(policy, device=device)
            policy_name = str(policy)
            cfg = TrainConfig.from_dict(meta.get("config", {}), source=f"{policy} meta.json")
        else:
            model, policy_name = policy, type(policy).__name__
            cfg = TrainConfig()
        cfg.n_envs = 1
        cfg.seed = seed
        if env_id is not None:
            cfg.env_id = env_id
        if env_kwargs is not None:
            cfg.env_kwargs = {**cfg.env_kwargs, **env_kwargs}

    if record_dir is not None:
        env_wrapper = _recording_wrapper(record_dir, n_episodes, env_wrapper)
    own_env = venv is None
    if own_env:
        venv = make_vec_env(cfg, n_envs=1, seed=seed, force_dummy=True,
                            env_wrapper=env_wrapper)
    try:
        venv.seed(seed)
        if model is None:
            venv.action_space.seed(seed)

            def act(obs):
                return np.array([venv.action_space.sample() for _ in range(venv.num_envs)])
        else:
            def act(obs):
                return model.predict(obs, deterministic=deterministic)[0]

        action_meanings = get_action_meanings(venv) or meta.get("action_meanings")
        before_step = None
        if record_dir is not None and own_env:
            before_step = functools.partial(_send_policy_outputs, venv, model)
        t0 = time.perf_counter()
        episodes = run_episodes(venv, act, n_episodes, step_hook=step_hook,
                                action_meanings=action_meanings, before_step=before_step)
        wall = time.perf_counter() - t0
    finally:
        if own_env:
            close_quietly(venv)
    return EvalReport(
        policy=policy_name, env_id=cfg.env_id, n_episodes=n_episodes, seed=seed,
        deterministic=deterministic, wall_s=wall, env_steps=sum(e.length for e in episodes),
        episodes=episodes, summary=summarize(episodes),
        meta={k: meta.get(k) for k in ("step", "env_version", "git_commit", "run_name")} if meta
        else {},
    )


def _recording_wrapper(record_dir: str | Path, n_episodes: int,
                       inner: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    from mtsandbox.tools.recording import RecordEpisodes, next_episode_index

    stop = next_episode_index(record_dir) + n_episodes  # not the auto-reset after the last one

    def wrap(env):
        if inner is not None:
            env = inner(env)
        return RecordEpisodes(env, record_dir, episode_trigger=lambda i: i < stop)

    return wrap


def _send_policy_outputs(venv, model, obs: np.ndarray, actions: np.ndarray) -> None:
    """Give the recorder the policy's value estimate and action probabilities for env 0."""
    value, probs = None, None
    if model is not None:
        import torch

        with torch.no_grad():
            obs_t, _ = model.policy.obs_to_tensor(obs)
            dist = model.policy.get_distribution(obs_t)
            probs = dist.distribution.probs[0].cpu().numpy().round(5).tolist()
            value = float(model.policy.predict_values(obs_t)[0, 0])
    else:
        n = int(getattr(venv.action_space, "n", 0))
        probs = [1.0 / n] * n if n else None
    try:
        venv.env_method("set_policy_outputs", value, probs, indices=[0])
    except AttributeError:
        pass


# ----------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", help="checkpoint directory (or run directory), or 'random'")
    parser.add_argument("--env-id", default=None,
                        help="env id (default: the checkpoint's; required-ish for 'random')")
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra gymnasium.make kwarg (value parsed as YAML); repeatable")
    parser.add_argument("--episodes", "-n", type=int, default=10, help="episodes (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="env / sampling seed (default 0)")
    parser.add_argument("--deterministic", action="store_true", help="argmax actions")
    parser.add_argument("--device", default="auto", help="torch device for the policy")
    parser.add_argument("--json", dest="json_out", default=None, metavar="PATH",
                        help="write the report (summary + per-episode) as JSON here")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="record the episodes to DIR/ep_NNNNNN (view: mtsandbox replay DIR)")


def cli(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mtsandbox.agents.checkpoints import CheckpointError
    from mtsandbox.agents.vecenv import EnvCreationError
    from mtsandbox.agents.config import ConfigError, apply_overrides

    console = Console(stderr=True, soft_wrap=True)
    try:
        env_kwargs = apply_overrides({}, args.env_arg) if args.env_arg else None
        if args.episodes < 1:
            raise ConfigError("--episodes must be >= 1")
        report = evaluate(args.policy, env_id=args.env_id, env_kwargs=env_kwargs,
                          n_episodes=args.episodes, seed=args.seed,
                          deterministic=args.deterministic, device=args.device,
                          record_dir=args.record)
    except (CheckpointError, ConfigError, EnvCreationError) as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        return 2
    report.print_table(Console())
    if args.json_out:
        path = report.save_json(args.json_out)
        console.print(f"wrote {path}")
    return 0
