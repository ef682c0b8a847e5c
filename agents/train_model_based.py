"""``mtsandbox train`` for ``algo: model_based``: the :class:`ModelBasedAgent` from a TrainConfig.

    mtsandbox train --config treepunch_mb_cpu            # experiments/treepunch_mb_cpu.yaml
    mtsandbox train --config treepunch_mb_cpu --set mb.act=plan total_steps=20000

The run directory has PPO's layout, so ``mtsandbox eval``, ``replay`` and ``probe`` take it::

    config.yaml                 resolved config (algo: model_based, the agent's settings in mb)
    tb/                         TensorBoard: mb/* (world-model losses, imagined return, the
                                trunks and return of the episodes collected), eval/*
    history.jsonl               one line per collect-and-train round (the same figures)
    eval.jsonl                  one line per evaluation (every eval_every env steps, and at the end)
    episodes/                   every collected episode, in the recording format (the world
                                model's training data; ``mtsandbox replay`` plays them)
    checkpoints/step_<N:09d>/   agent.pt + world_model/ + meta.json, every checkpoint_every steps
    checkpoints/final/          at the end; ``interrupted/`` on Ctrl-C
    summary.json                steps, wall time, final checkpoint, eval history

The agent plays one env (``n_envs`` is not used) and keeps its replay in memory, so a run
cannot be resumed; the recorded episodes stay on disk and can prefill a new one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mtsandbox.agents.config import ConfigError, TrainConfig


def mb_config(cfg: TrainConfig, source: str = "config") -> Any:
    """The :class:`~mtsandbox.agents.model_based.MBConfig` of an ``algo: model_based`` run
    (``cfg.mb`` plus the config's env_id, env_kwargs and seed); one-line ConfigError."""
    from mtsandbox.agents.model_based import MBConfig

    for k in ("env_id", "env_kwargs", "seed"):
        if k in cfg.mb:
            raise ConfigError(f"{source}: mb.{k}: set {k} at the top level instead")
    try:
        return MBConfig.from_dict({**cfg.mb, "env_id": cfg.env_id,
                                   "env_kwargs": cfg.env_kwargs, "seed": cfg.seed},
                                  source=f"{source}: mb")
    except TypeError as e:
        raise ConfigError(f"{source}: mb: {e}") from None


def check_config(cfg: TrainConfig, resume: Any = None) -> None:
    """Fail before anything is created: a bad ``mb`` key, or a resume (not supported)."""
    mb_config(cfg)
    if resume is not None:
        raise ConfigError("algo: model_based runs cannot be resumed (the replay lives in "
                          "memory); start a new run (its recorded episodes can prefill it)")


def train_model_based(cfg: TrainConfig, run_path: Path, *, console, eval_at_end: bool = True,
                      eval_at_start: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Train ``cfg`` (``algo: model_based``) in ``run_path``; returns the ``TrainResult``
    fields (``train`` builds it)."""
    import gymnasium as gym
    from torch.utils.tensorboard import SummaryWriter

    import mtsandbox.envs  # noqa: F401  (registers the ids)
    from mtsandbox.agents.checkpoints import env_variant_info
    from mtsandbox.agents.evaluate import evaluate
    from mtsandbox.agents.model_based import ModelBasedAgent
    from mtsandbox.tools.recording import RecordEpisodes

    mb_cfg = mb_config(cfg)  # train() has written config.yaml already
    env = gym.make(cfg.env_id, **cfg.env_kwargs)
    env = RecordEpisodes(env, run_path / "episodes", bodies_each_step=False,
                         config={"agent": "model_based", "run": run_path.name})
    writer = SummaryWriter(str(run_path / "tb"))
    meanings = list(env.unwrapped.get_action_meanings()) if hasattr(
        env.unwrapped, "get_action_meanings") else None
    extra = {"run_name": run_path.name, "device": device, "action_meanings": meanings,
             **env_variant_info(cfg.env_id, cfg.env_kwargs)}

    def log(msg: str) -> None:
        console.print(msg, highlight=False)

    agent = ModelBasedAgent(env, config=mb_cfg, device=device, log=log)
    history: list[dict[str, Any]] = []
    eval_wall = 0.0
    t_start = time.perf_counter()

    def save(tag: str) -> Path:
        name = f"step_{agent.num_timesteps:09d}" if tag == "step" else tag
        return agent.save(run_path / "checkpoints" / name, train_config=cfg.to_dict(),
                          extra={**extra, "tag": tag})

    def run_eval() -> None:
        nonlocal eval_wall
        import torch

        t0 = time.perf_counter()
        state, threads = agent.internal_state, torch.get_num_threads()
        agent.reset_state()
        try:
            rep = evaluate(agent, env_id=cfg.env_id, env_kwargs=cfg.env_kwargs,
                           n_episodes=cfg.eval_episodes, seed=cfg.seed + 10_000 + len(history),
                           deterministic=cfg.eval_deterministic, device=device)
        finally:  # the collector's episode goes on where it was
            agent.internal_state = state
            torch.set_num_threads(threads)
        wall = time.perf_counter() - t0
        eval_wall += wall
        row = {"step": int(agent.num_timesteps), "wall_s": wall,
               "elapsed_s": time.perf_counter() - t_start, "eval_wall_s_total": eval_wall,
               "episodes": rep.n_episodes, "summary": rep.summary}
        history.append(row)
        with open(run_path / "eval.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for key in ("hidden_performance", "observed_return"):
            writer.add_scalar(f"eval/{key}", rep.summary[key]["mean"], agent.num_timesteps)
        hp = rep.summary["hidden_performance"]
        log(f"eval @ {agent.num_timesteps}: hidden_performance {hp['mean']:.2f} "
            f"± {hp['ci95'] or 0:.2f} ({rep.n_episodes} ep, {wall:.1f} s)")

    # evaluation and checkpoints fall on multiples of their periods, as in the PPO runs
    marks = sorted({*(range(cfg.eval_every, cfg.total_steps, cfg.eval_every)
                      if cfg.eval_every else ()),
                    *(range(cfg.checkpoint_every, cfg.total_steps, cfg.checkpoint_every)
                      if cfg.checkpoint_every else ()), cfg.total_steps})
    final: Path | None = None
    interrupted = False
    learn_wall = 0.0
    n_logged = 0
    log(f"run dir: {run_path}  ({cfg.env_id}, model-based, act={mb_cfg.act}, device {device})")
    try:
        t_learn = time.perf_counter()
        try:
            if eval_at_start:
                run_eval()
            for mark in marks:
                if mark > agent.num_timesteps:
                    agent.learn(mark - agent.num_timesteps)
                for row in agent.history[n_logged:]:
                    for k, v in row.items():
                        if isinstance(v, (int, float)) and k != "env_steps":
                            writer.add_scalar(f"mb/{k}", v, row["env_steps"])
                    with open(run_path / "history.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                n_logged = len(agent.history)
                if cfg.checkpoint_every and mark % cfg.checkpoint_every == 0 \
                        and mark < cfg.total_steps:
                    save("step")
                if (cfg.eval_every and mark % cfg.eval_every == 0) or (
                        mark == cfg.total_steps and eval_at_end):
                    run_eval()
        finally:
            learn_wall = time.perf_counter() - t_learn
        final = save("final")
        log(f"final checkpoint: {final}")
    except KeyboardInterrupt:
        interrupted = True
        if agent.num_timesteps:
            final = save("interrupted")
            log(f"\ninterrupted; checkpoint: {final}")
        raise
    finally:
        agent.close()
        env.close()
        writer.close()
        wall = time.perf_counter() - t_start
        result = {"run_dir": run_path, "final_checkpoint": final,
                  "steps": int(agent.num_timesteps), "wall_s": wall, "learn_wall_s": learn_wall,
                  "eval_wall_s": eval_wall, "eval_history": history, "interrupted": interrupted}
        t = learn_wall - eval_wall
        (run_path / "summary.json").write_text(json.dumps({
            **result, "total_steps": int(agent.num_timesteps),
            "train_steps_per_s": agent.num_timesteps / t if t > 0 else None},
            indent=2, default=str))
    return result


