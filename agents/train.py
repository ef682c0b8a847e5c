"""Train PPO (stable-baselines3) with the sandbox CNN from a :class:`TrainConfig`.

Programmatic::

    from mtsandbox.experiments.config import load_config
    from mtsandbox.agents.train import train, load_checkpoint
    cfg = load_config("experiments/smoke.yaml", overrides=["seed=1"])
    result = train(cfg)                                   # -> TrainResult
    result = train(cfg, resume="runs/<run>/checkpoints/step_000000512")
    model, meta = load_checkpoint(result.final_checkpoint)

CLI: ``mtsandbox train --config experiments/treepunch_ppo.yaml --set seed=1 n_envs=4``
     ``mtsandbox train --resume runs/<run>/checkpoints/final --set total_steps=4000000``

Run layout (``<run_dir>/<run_name>/``)::

    config.yaml                 resolved config
    tb/                         TensorBoard scalars: charts/*, eval/*, rollout/*, train/*, time/*
    eval.jsonl                  one line per evaluation during training
    checkpoints/step_<N:09d>/   model.zip (SB3 PPO) + meta.json, every checkpoint_every steps
    checkpoints/final/          at the end of training
    checkpoints/interrupted/    when stopped with Ctrl-C
    summary.json                steps, wall time, final checkpoint, eval history

TensorBoard: ``charts/episode_observed_return``, ``charts/episode_hidden_performance``,
``charts/episode_length``, ``charts/events_per_episode/<kind>`` (means over the episodes that
ended since the previous write), ``eval/observed_return``, ``eval/hidden_performance``,
``eval/episode_length``, ``eval/events_per_episode/<kind>`` (means over eval episodes) and their
``*_ci95`` half-widths.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecMonitor,
)

from mtsandbox.agents.evaluate import EpisodeTracker, run_episodes, summarize
from mtsandbox.agents.policy import make_policy_kwargs
from mtsandbox.experiments.config import ConfigError, TrainConfig, load_config
from mtsandbox.provenance import git_info

CHECKPOINT_FORMAT = "mtsandbox-checkpoint/1"
MODEL_FILE = "model.zip"
META_FILE = "meta.json"


class CheckpointError(RuntimeError):
    """A missing or unreadable checkpoint (the message is one line, fit for the user)."""


class EnvCreationError(RuntimeError):
    """``gymnasium.make`` failed (unknown id, bad kwargs, ...); the message is one line."""


# ----------------------------------------------------------------------------- envs

def _import_env_module(env_id: str) -> None:
    """Import whatever registers ``env_id``: ``mtsandbox.envs`` and ``module:`` prefixes."""
    import importlib

    try:
        importlib.import_module("mtsandbox.envs")
    except ImportError:  # pragma: no cover - envs package always exists in the repo
        pass
    if ":" in env_id:
        importlib.import_module(env_id.split(":", 1)[0])


def _make_env(env_id: str, env_kwargs: dict[str, Any], seed: int, grayscale: bool,
              in_subprocess: bool,
              env_wrapper: Callable[[gym.Env], gym.Env] | None = None) -> gym.Env:
    if in_subprocess:
        # Ctrl-C goes to the whole process group; only the learner handles it, and then closes
        # the workers through their pipes (a worker dying mid-step would hang close()).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _import_env_module(env_id)
        if env_id.startswith("MinetestSandbox/"):
            # Long runs survive a dead or hung server: the episode is truncated with the
            # reason in info, a new server starts, training goes on.
            env_kwargs = {"on_server_death": "respawn", **env_kwargs}
        env = gym.make(env_id, **env_kwargs)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EnvCreationError(f"cannot create env {env_id!r}: {msg}") from e
    if env_wrapper is not None:  # e.g. a recorder: sees the env's own RGB observations
        env = env_wrapper(env)
    if grayscale:
        env = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    env.action_space.seed(seed)
    return env


class ThreadSwitchCallback(BaseCallback):
    """On CPU: one torch thread while collecting rollouts (the env servers and workers need the
    other cores; a second OpenMP thread spinning against them made inference ~7x slower on 2
    cores), every core during the PPO update (the envs are idle then)."""

    def __init__(self) -> None:
        super().__init__()
        self.update_threads = max(1, os.cpu_count() or 1)

    def _on_rollout_start(self) -> None:
        torch.set_num_threads(1)

    def _on_rollout_end(self) -> None:
        torch.set_num_threads(self.update_threads)

    def _on_step(self) -> bool:
        return True


def make_vec_env(cfg: TrainConfig, n_envs: int | None = None, seed: int | None = None,
                 force_dummy: bool = False,
                 env_wrapper: Callable[[gym.Env], gym.Env] | None = None) -> VecEnv:
    """``n_envs`` (default ``cfg.n_envs``) envs: Subproc (n > 1) or Dummy VecEnv, VecMonitor,
    then VecFrameStack (channel-last) when ``cfg.frame_stack > 1``. Env ``i`` is seeded
    ``seed + i`` (default ``cfg.seed``) on the first reset. ``env_wrapper`` (picklable when
    n > 1) wraps each env right after ``gymnasium.make``, before the grayscale wrapper."""
    n = cfg.n_envs if n_envs is None else n_envs
    base_seed = cfg.seed if seed is None else seed
    use_ray = cfg.vec_env == "ray" and not force_dummy
    use_subproc = not use_ray and not force_dummy and (
        cfg.vec_env == "subproc" or (cfg.vec_env == "auto" and n > 1))
    fns: list[Callable[[], gym.Env]] = [
        functools.partial(_make_env, cfg.env_id, dict(cfg.env_kwargs), base_seed + i,
                          cfg.grayscale, use_subproc or use_ray, env_wrapper)
        for i in range(n)
    ]
    venv: VecEnv
    if use_ray:  # env servers as Ray actors (local Ray, or the cluster in RAY_ADDRESS)
        from mtsandbox.agents.ray_envs import RayVecEnv

        venv = RayVecEnv(fns)
    else:
        venv = SubprocVecEnv(fns) if use_subproc else DummyVecEnv(fns)
    try:
        venv.seed(base_seed)
        venv = VecMonitor(venv)
        if cfg.frame_stack > 1:
            venv = VecFrameStack(venv, n_stack=cfg.frame_stack, channels_order="last")
    except BaseException:
        close_quietly(venv)
        raise
    return venv


def close_quietly(venv: Any) -> None:
    """Close a VecEnv, never raising (used in ``finally`` blocks)."""
    if venv is None:
        return
    try:
        venv.close()
        return
    except Exception as e:  # a worker that already died, a broken pipe, ...
        warnings.warn(f"error while closing envs: {e!r}", stacklevel=2)
    # SubprocVecEnv.close() stops at the first dead worker: ask the live ones to close their
    # env (so e.g. a Minetest server is shut down), and only then terminate stragglers.
    base = getattr(venv, "unwrapped", venv)
    procs, remotes = getattr(base, "processes", None), getattr(base, "remotes", None)
    if not procs or not remotes:
        return
    for remote, proc in zip(remotes, procs, strict=False):
        if proc.is_alive():
            try:
                remote.send(("close", None))
            except Exception:
                pass
    for proc in procs:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


def get_action_meanings(venv: VecEnv) -> list[str] | None:
    """``get_action_meanings()`` of env 0 if the env provides one."""
    try:
        meanings = venv.env_method("get_action_meanings", indices=[0])[0]
        return [str(m) for m in meanings]
    except Exception:
        return None


def env_version_info(env_id: str, venv: VecEnv | None = None) -> dict[str, Any]:
    """Registered version of ``env_id`` (the ``-vN`` suffix), entry point and, if the env sets
    ``metadata["version"]``, that too."""
    info: dict[str, Any] = {"env_version": None, "env_entry_point": None,
                            "env_metadata_version": None}
    try:
        _import_env_module(env_id)
        spec = gym.spec(env_id.split(":", 1)[-1])
        info["env_version"] = spec.version
        info["env_entry_point"] = str(spec.entry_point)
    except Exception:
        pass
    if venv is not None:
        try:
            info["env_metadata_version"] = venv.get_attr("metadata", indices=[0])[0].get("version")
        except Exception:
            pass
    return info




def env_variant_info(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The resolved variant (every default filled in) and the id's defaults fingerprint
    (``mtsandbox.envs.versions``); None for ids that are not this sandbox's."""
    from mtsandbox.envs import versions

    name = env_id.split(":", 1)[-1]
    try:
        return {"env_resolved": versions.resolve(name, env_kwargs),
                "env_fingerprint": versions.fingerprint(name)}
    except (ValueError, TypeError, KeyError):
        return {"env_resolved": None, "env_fingerprint": None}


_VARIANT_WARNED: set[str] = set()


def warn_if_variant_changed(meta: dict[str, Any], where: str) -> str | None:
    """Warn (once per checkpoint) when the checkpoint's env id and kwargs now build a variant
    other than the one it was trained on, or the id's defaults changed without a version
    bump. Returns the message (None when nothing changed or nothing was recorded)."""
    from mtsandbox.envs import versions

    msg = versions.variant_mismatch(meta)
    if msg is None and meta.get("env_fingerprint") and meta.get("env_id"):
        try:
            now = versions.fingerprint(str(meta["env_id"]).split(":", 1)[-1])
        except (ValueError, TypeError):
            now = None
        if now is not None and now != meta["env_fingerprint"]:
            msg = (f"the defaults of {meta['env_id']} changed since this checkpoint was trained "
                   "(a default changed without a version bump)")
    if msg and where not in _VARIANT_WARNED:
        _VARIANT_WARNED.add(where)
        warnings.warn(f"{where}: {msg}", stacklevel=2)
    return msg


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(model: PPO, path: str | Path, cfg: TrainConfig,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``path/model.zip`` and ``path/meta.json`` (meta written last, atomically)."""
    import stable_baselines3

    from mtsandbox import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / MODEL_FILE)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "algo": cfg.algo,
        "step": int(model.num_timesteps),
        "env_id": cfg.env_id,
        "env_kwargs": cfg.env_kwargs,
        "config": cfg.to_dict(),
        "policy_observation_space": repr(model.observation_space),
        "action_space": repr(model.action_space),
        "mtsandbox_version": __version__,
        "sb3_version": stable_baselines3.__version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **git_info(),
        **(extra or {}),
    }
    tmp = path / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(path / META_FILE)
    return path


def find_checkpoint_dir(path: str | Path) -> Path:
    """Checkpoint dir for ``path``: the dir itself, the dir of a model.zip/meta.json, or for a
    run directory its ``checkpoints/final`` (else ``interrupted``, else the latest step)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_file():
        p = p.parent
    if (p / "checkpoints").is_dir():
        ck = p / "checkpoints"
        for name in ("final", "interrupted"):
            if (ck / name / META_FILE).exists():
                return ck / name
        steps = sorted(d for d in ck.glob("step_*") if (d / META_FILE).exists())
        if not steps:
            raise CheckpointError(f"no checkpoint in run directory {p}")
        return steps[-1]
    return p


def read_meta(path: str | Path) -> dict[str, Any]:
    ck = find_checkpoint_dir(path)
    meta_path = ck / META_FILE
    if not meta_path.exists():
        raise CheckpointError(f"not a checkpoint (no {META_FILE}): {ck}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint {meta_path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"corrupt checkpoint {meta_path}: not a {CHECKPOINT_FORMAT} meta")
    warn_if_variant_changed(meta, str(ck))
    return meta


def load_checkpoint(path: str | Path, env: VecEnv | None = None,
                    device: str = "auto") -> tuple[PPO, dict[str, Any]]:
    """Load ``(model, meta)`` from a checkpoint directory (see :func:`find_checkpoint_dir`).

    ``env``: attach this VecEnv (needed to continue training; its spaces must match).
    Raises :class:`CheckpointError` (one line) for a missing or corrupt checkpoint.
    """
    ck = find_checkpoint_dir(path)
    meta = read_meta(ck)
    zip_path = ck / MODEL_FILE
    if not zip_path.exists():
        raise CheckpointError(f"corrupt checkpoint {ck}: {MODEL_FILE} missing")
    from mtsandbox.agents.safe_load import UntrustedCheckpoint, trusted_objects

    try:
        objects = trusted_objects(zip_path)
    except UntrustedCheckpoint as e:
        raise CheckpointError(f"refusing {zip_path}: {e} (only SB3, gymnasium, numpy and "
                              "this project's classes are trusted in a checkpoint)") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"corrupt checkpoint {zip_path}: {e}") from None
    try:
        model = PPO.load(zip_path, env=env, device=resolve_device(device),
                         custom_objects=objects)
    except ValueError as e:
        if env is not None and "space" in str(e).lower():
            msg = str(e).replace("\n", " ")
            raise CheckpointError(f"checkpoint {ck} does not fit this env: {msg}") from None
        raise CheckpointError(f"corrupt checkpoint {zip_path}: {e}") from None
    except Exception as e:
        msg = str(e).replace("\n", " ")
        raise CheckpointError(f"corrupt checkpoint {zip_path}: {type(e).__name__}: {msg}") from None
    meta["path"] = str(ck)
    return model, meta


# ----------------------------------------------------------------------------- callbacks

class EpisodeStatsCallback(BaseCallback):
    """``charts/*`` scalars from the info contract of the training envs."""

    def _on_training_start(self) -> None:
        self.tracker = EpisodeTracker(self.training_env.num_envs)
        self.n_episodes = 0

    def _on_step(self) -> bool:
        finished = self.tracker.update(self.locals["rewards"], self.locals["dones"],
                                       self.locals["infos"])
        for ep in finished:
            self.n_episodes += 1
            self.logger.record_mean("charts/episode_observed_return", ep.observed_return)
            self.logger.record_mean("charts/episode_hidden_performance", ep.hidden_performance)
            self.logger.record_mean("charts/episode_length", ep.length)
            for kind in sorted(self.tracker.kinds):
                self.logger.record_mean(f"charts/events_per_episode/{kind}",
                                        ep.events.get(kind, 0))
        if finished:
            self.logger.record("charts/episodes", self.n_episodes)
        return True


class CheckpointCallback(BaseCallback):
    """Saves ``checkpoints/step_<N>`` every ``every`` env steps."""

    def __init__(self, every: int, save_fn) -> None:
        super().__init__()
        self.every = every
        self.save_fn = save_fn

    def _on_training_start(self) -> None:
        self.bucket = self.num_timesteps // self.every if self.every else 0

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps // self.every > self.bucket:
            self.bucket = self.num_timesteps // self.every
            self.save_fn("step")
        return True


class PeriodicEvalCallback(BaseCallback):
    """Every ``cfg.eval_every`` env steps, play ``cfg.eval_episodes`` on a separate single env
    (built lazily, closed by :meth:`close_env`) and log ``eval/*``."""

    def __init__(self, cfg: TrainConfig, run_path: Path, console=None,
                 at_start: bool = False, at_end: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.run_path = run_path
        self.console = console
        self.at_start, self.at_end = at_start, at_end
        self.eval_env: VecEnv | None = None
        self.history: list[dict[str, Any]] = []
        self.eval_wall_s = 0.0
        self.last_step = -1

    def _on_training_start(self) -> None:
        self.t_start = time.perf_counter()
        every = self.cfg.eval_every
        self.bucket = self.num_timesteps // every if every else 0
        if self.at_start:
            self.run_eval()

    def _on_step(self) -> bool:
        every = self.cfg.eval_every
        if every and self.num_timesteps // every > self.bucket:
            self.bucket = self.num_timesteps // every
            self.run_eval()
        return True

    def _on_training_end(self) -> None:
        if self.at_end and self.last_step != self.num_timesteps:
            self.run_eval()

    def run_eval(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        if self.eval_env is None:
            self.eval_env = make_vec_env(self.cfg, n_envs=1, seed=self.cfg.seed + 10_000,
                                         force_dummy=True)
        self.eval_env.seed(self.cfg.seed + 10_000 + len(self.history))
        model = self.model
        det = self.cfg.eval_deterministic
        episodes = run_episodes(self.eval_env,
                                lambda obs: model.predict(obs, deterministic=det)[0],
                                self.cfg.eval_episodes)
        summary = summarize(episodes)
        wall = time.perf_counter() - t0
        self.eval_wall_s += wall
        names = {"observed_return": "observed_return", "hidden_performance": "hidden_performance",
                 "length": "episode_length"}
        for key, s in summary.items():
            name = names.get(key) or "events_per_episode/" + key.split("/", 1)[1]
            self.logger.record(f"eval/{name}", s["mean"])
            if s["ci95"] is not None:
                self.logger.record(f"eval/{name}_ci95", s["ci95"])
        self.logger.dump(self.num_timesteps)
        row = {"step": int(self.num_timesteps), "wall_s": wall,
               "elapsed_s": time.perf_counter() - getattr(self, "t_start", t0),
               "eval_wall_s_total": self.eval_wall_s, "episodes": len(episodes),
               "summary": summary}
        self.history.append(row)
        self.last_step = self.num_timesteps
        with open(self.run_path / "eval.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.console is not None:
            hp, ret = summary["hidden_performance"], summary["observed_return"]
            self.console.print(
                f"[bold]eval @ {self.num_timesteps}[/bold]: hidden_performance "
                f"{hp['mean']:.2f} ± {hp['ci95'] or 0:.2f}, observed_return "
                f"{ret['mean']:.2f} ± {ret['ci95'] or 0:.2f} ({len(episodes)} ep, {wall:.1f} s)",
                highlight=False)
        return row

    def close_env(self) -> None:
        close_quietly(self.eval_env)
        self.eval_env = None


# ----------------------------------------------------------------------------- training

@dataclass
class TrainResult:
    run_dir: Path
    final_checkpoint: Path | None
    steps: int
    wall_s: float
    """Wall time of the whole call (env start-up, model set-up, training, saving)."""
    learn_wall_s: float
    """Wall time inside ``model.learn`` (env stepping, PPO updates, evaluations)."""
    eval_wall_s: float
    """Part of ``learn_wall_s`` spent in evaluations."""
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def train_steps_per_s(self) -> float:
        """End-to-end training throughput (env steps + PPO updates), evaluations excluded."""
        t = self.learn_wall_s - self.eval_wall_s
        return self.steps / t if t > 0 else float("nan")


def _run_path_for(cfg: TrainConfig, resume: Path | None) -> Path:
    if resume is not None and resume.parent.name == "checkpoints":
        return resume.parent.parent  # continue in the checkpoint's run directory
    path = Path(cfg.run_dir) / cfg.resolved_run_name()
    if resume is None and path.exists() and any(path.iterdir()):
        # Two runs in the same second with the same seed: do not mix their files.
        i = 1
        while (path.parent / f"{path.name}_{i}").exists():
            i += 1
        path = path.parent / f"{path.name}_{i}"
    return path


def init_weights(model: PPO, path: str | Path, device: str, reset_actor: bool = False,
                 action_copy: dict[str, str] | None = None,
                 action_meanings: list[str] | None = None) -> None:
    """Copy the policy weights of the checkpoint at ``path`` into ``model`` (spaces must match);
    ``reset_actor``: then re-initialise the action head as SB3 does (orthogonal, gain 0.01);
    ``action_copy``: ``{target: source}`` head rows, see ``TrainConfig.init_action_copy``."""
    src, _ = load_checkpoint(path, device=device)
    if src.observation_space != model.observation_space or src.action_space != model.action_space:
        raise CheckpointError(
            f"init_from {path}: spaces differ (checkpoint {src.observation_space}, "
            f"{src.action_space}; run {model.observation_space}, {model.action_space})")
    model.policy.load_state_dict(src.policy.state_dict())
    head = model.policy.action_net
    assert isinstance(head, torch.nn.Linear)  # SB3's discrete action head
    if reset_actor:
        torch.nn.init.orthogonal_(head.weight, gain=0.01)
        torch.nn.init.zeros_(head.bias)
    if action_copy:
        names = list(action_meanings or [])
        with torch.no_grad():
            for target, source in action_copy.items():
                if target not in names or source not in names:
                    raise CheckpointError(f"init_action_copy: unknown action {target!r} or "
                                          f"{source!r}; actions: {names}")
                t, s = names.index(target), names.index(source)
                head.weight[t] = head.weight[s]
                head.bias[t] = head.bias[s] - math.log(2.0)


def train(cfg: TrainConfig, resume: str | Path | None = None, *, console=None,
          callbacks: list[BaseCallback] | None = None, eval_at_start: bool = False,
          eval_at_end: bool = False, verbose: int = 0) -> TrainResult:
    """Train until ``cfg.total_steps`` env steps; see the module docstring for the run layout.

    ``resume``: a checkpoint (or run) directory; training continues from its step count (to
    ``cfg.total_steps`` in total) in the checkpoint's run directory. ``callbacks``: extra SB3
    callbacks. On Ctrl-C an ``interrupted`` checkpoint is written and KeyboardInterrupt is
    re-raised; envs are closed in every case.
    """
    from rich.console import Console

    console = console or Console(stderr=True, soft_wrap=True)
    warnings.filterwarnings("ignore", message=".*rich is experimental.*")
    try:
        from tqdm import TqdmExperimentalWarning

        warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
    except ImportError:  # pragma: no cover
        pass
    cfg.validate()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device = resolve_device(cfg.device)
    resume_dir = find_checkpoint_dir(resume) if resume is not None else None
    if resume_dir is not None:
        read_meta(resume_dir)  # fail early with a clear message
    run_path = _run_path_for(cfg, resume_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    if cfg.run_name is None:
        cfg.run_name = run_path.name
    (run_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    venv: VecEnv | None = None
    model: PPO | None = None
    eval_cb = PeriodicEvalCallback(cfg, run_path, console=console, at_start=eval_at_start,
                                   at_end=eval_at_end)
    extra_meta: dict[str, Any] = {"run_name": run_path.name, "device": device}
    t_start = time.perf_counter()
    learn_wall = 0.0
    steps_before = 0

    def save(tag: str) -> Path:
        assert model is not None
        name = f"step_{model.num_timesteps:09d}" if tag == "step" else tag
        return save_checkpoint(model, run_path / "checkpoints" / name, cfg,
                               {**extra_meta, "tag": tag})

    final: Path | None = None
    interrupted = False
    try:
        venv = make_vec_env(cfg)
        extra_meta["action_meanings"] = get_action_meanings(venv)
        extra_meta.update(env_version_info(cfg.env_id, venv))
        extra_meta.update(env_variant_info(cfg.env_id, cfg.env_kwargs))
        if resume_dir is not None:
            model, _ = load_checkpoint(resume_dir, env=venv, device=device)
            steps_before = model.num_timesteps
            console.print(f"resuming from {resume_dir} at step {steps_before}", highlight=False)
        else:
            model = PPO(
                "CnnPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                n_epochs=cfg.n_epochs, learning_rate=cfg.lr, gamma=cfg.gamma,
                gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
                clip_range=cfg.clip, max_grad_norm=cfg.max_grad_norm,
                policy_kwargs=make_policy_kwargs(cfg.features_dim), seed=cfg.seed,
                device=device, verbose=0,
            )
        if cfg.init_from and resume_dir is None:
            init_weights(model, cfg.init_from, device, reset_actor=cfg.init_reset_actor,
                         action_copy=cfg.init_action_copy,
                         action_meanings=extra_meta.get("action_meanings"))
            extra_meta["init_from"] = str(cfg.init_from)
            console.print(f"policy initialised from {cfg.init_from}", highlight=False)
        formats = ["tensorboard"] + (["stdout"] if verbose else [])
        model.set_logger(configure(str(run_path / "tb"), formats))
        remaining = cfg.total_steps - model.num_timesteps
        console.print(f"run dir: {run_path}  ({cfg.env_id}, {cfg.n_envs} env(s), device {device})",
                      highlight=False)
        if remaining > 0:
            cbs: list[BaseCallback] = [EpisodeStatsCallback(), eval_cb]
            if not cfg.torch_threads and device == "cpu":
                cbs.append(ThreadSwitchCallback())
            if cfg.checkpoint_every:
                cbs.append(CheckpointCallback(cfg.checkpoint_every, save))
            cbs.extend(callbacks or [])
            t_learn = time.perf_counter()
            try:
                model.learn(total_timesteps=remaining, callback=CallbackList(cbs),
                            log_interval=cfg.log_interval,
                            reset_num_timesteps=resume_dir is None,
                            progress_bar=cfg.progress_bar)
            finally:
                learn_wall = time.perf_counter() - t_learn
        else:
            console.print(f"already at step {model.num_timesteps} >= total_steps "
                          f"{cfg.total_steps}; nothing to train", highlight=False)
        final = save("final")
        console.print(f"final checkpoint: {final}", highlight=False)
    except KeyboardInterrupt:
        interrupted = True
        if model is not None and model.num_timesteps > steps_before:
            try:
                final = save("interrupted")
                console.print(f"\ninterrupted; checkpoint: {final}", highlight=False)
            except Exception as e:  # pragma: no cover
                console.print(f"\ninterrupted; could not save a checkpoint: {e}")
        raise
    except (EOFError, BrokenPipeError, ConnectionResetError) as e:
        raise RuntimeError(f"an env worker process died ({type(e).__name__}); its traceback "
                           "is printed above") from e
    finally:
        eval_cb.close_env()
        close_quietly(venv)
        wall = time.perf_counter() - t_start
        result = TrainResult(
            run_dir=run_path, final_checkpoint=final,
            steps=(model.num_timesteps - steps_before) if model is not None else 0,
            wall_s=wall, learn_wall_s=learn_wall, eval_wall_s=eval_cb.eval_wall_s,
            eval_history=eval_cb.history,
            interrupted=interrupted,
        )
        try:
            summary = {
                "run_dir": str(run_path), "final_checkpoint": str(final) if final else None,
                "total_steps": int(model.num_timesteps) if model is not None else 0,
                "steps_this_session": result.steps, "wall_s": wall,
                "learn_wall_s": learn_wall, "eval_wall_s": result.eval_wall_s,
                "train_steps_per_s": result.train_steps_per_s, "interrupted": interrupted,
                "eval_history": result.eval_history,
            }
            (run_path / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        except Exception:  # pragma: no cover - never mask the original error
            pass
    return result


# ----------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None,
                        help="YAML config (path, or a name under experiments/, e.g. 'smoke'); "
                             "default: the resumed checkpoint's config, else built-in defaults")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE",
                        help="override config fields (value parsed as YAML; "
                             "env_kwargs.NAME=VALUE for env kwargs); repeatable")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT",
                        help="continue training from a checkpoint (or run) directory")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also print SB3's scalar tables to stdout")


def cli(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    try:
        base = None
        if args.resume and not args.config:
            base = read_meta(args.resume).get("config")
        cfg = load_config(args.config, args.overrides, base=base)
        if args.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        train(cfg, resume=args.resume, console=console, verbose=int(args.verbose))
    except (ConfigError, CheckpointError, EnvCreationError) as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("stopped by Ctrl-C; envs closed", highlight=False)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    from mtsandbox.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
