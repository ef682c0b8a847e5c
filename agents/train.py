"""Train PPO (stable-baselines3) with the sandbox CNN from a :class:`TrainConfig` (or, with
``algo: model_based``, the model-based agent: see :mod:`mtsandbox.agents.train_model_based`).

Programmatic::

    from mtsandbox.agents.config import load_config
    from mtsandbox.agents.checkpoints import load_checkpoint
    from mtsandbox.agents.train import train
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
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import (
    VecEnv,
)

from mtsandbox.agents.evaluate import EpisodeTracker, run_episodes, summarize
from mtsandbox.agents.policy import make_policy_kwargs
from mtsandbox.agents.checkpoints import (
    CheckpointError,
    env_variant_info,
    find_checkpoint_dir,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from mtsandbox.agents.config import ConfigError, TrainConfig, load_config
from mtsandbox.agents.devices import resolve_device
from mtsandbox.agents.vecenv import (
    EnvCreationError,
    close_quietly,
    env_version_info,
    get_action_meanings,
    make_vec_env,
)

# ----------------------------------------------------------------------------- envs

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
    if cfg.algo == "model_based":
        from mtsandbox.agents.train_model_based import check_config

        check_config(cfg, resume)
    resume_dir = find_checkpoint_dir(resume) if resume is not None else None
    if resume_dir is not None:
        read_meta(resume_dir)  # fail early with a clear message
    run_path = _run_path_for(cfg, resume_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    if cfg.run_name is None:
        cfg.run_name = run_path.name
    (run_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if cfg.algo == "model_based":
        from mtsandbox.agents.train_model_based import train_model_based

        return TrainResult(**train_model_based(cfg, run_path, console=console, device=device,
                                               eval_at_end=eval_at_end or cfg.eval_every > 0,
                                               eval_at_start=eval_at_start))

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
        if cfg.rollout == "overlap":
            from mtsandbox.agents.overlap import use_overlapped_rollouts

            use_overlapped_rollouts(model)
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


if __name__ == "__main__":  # pragma: no cover - python -m mtsandbox.agents.train == mtsandbox train
    _parser = argparse.ArgumentParser(prog="mtsandbox train")
    add_arguments(_parser)
    sys.exit(cli(_parser.parse_args()))
