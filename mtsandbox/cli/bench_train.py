"""Benchmark PPO training end to end and its parts; prints figures, writes results/bench/.

    mtsandbox bench train [--config treepunch_ppo_cpu] [--iters 4] [--set key=value ...]

Measured on the config's own env, PPO and thread settings (the code path of
``mtsandbox train``):

1. env steps/s of one env alone (one process, random actions, observations rendered);
2. start-up: seconds to build the VecEnv and reset every env (servers start on reset);
3. rollout steps/s (SB3 ``collect_rollouts``: env stepping + batched inference) and update
   ms per sample (SB3 ``train``: ``n_epochs`` passes), each over ``--iters`` iterations
   after one warm-up iteration;
4. end to end: ``learn()`` over ``--iters`` iterations, steps/s, and the machine's CPU
   utilisation (all processes, /proc/stat) while it ran.

Ceiling from the measured parts: the envs stepping on every core during the rollout, then
the update, i.e. ``1 / (1 / (env_alone * min(cores, n_envs)) + update_s_per_sample)``.
One env alone keeps more than one core partly busy (its Python process and its server), so a
second, CPU-bound ceiling is printed too: the machine's cores spent on nothing but env steps
at the CPU cost one step has alone (``cores / env_cpu_s_per_step``, at most n_envs x the
alone rate), then the update. The last figure printed is end-to-end / ceiling.

Where the rollout's time goes (the profile; also as shares of one env step's time, with the
update): the learner's wall time inside
``VecEnv.step_wait`` (waiting for the workers: env step, pickling, pipes) and the rest of
``collect_rollouts`` (inference, rollout buffer, callbacks; split further into the policy's
forward pass, sending the actions and the rest). With SB3's lockstep VecEnvs the two never
overlap, so their sum is the rollout time; ``--set rollout=overlap`` measures the overlapped
loop (agents/overlap.py), where the learner infers for one env group while the other steps, so
the wait shrinks by what the overlap hides. Figures are measurements of this machine
at this moment: run it on a quiet machine (nothing else training) to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

OUT = Path("results/bench")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", default="treepunch_ppo_cpu",
                    help="training config (name under experiments/ or a path)")
    ap.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--iters", type=int, default=4, help="PPO iterations per measurement")
    ap.add_argument("--env-steps", type=int, default=2000, help="steps for the env-alone rate")
    ap.add_argument("--label", default="", help="name of this measurement in results/bench/")
    ap.add_argument("--json", help="write the figures here (default results/bench/train_<label>"
                                   ".json)")


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        vals = [float(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)
    return sum(vals) - idle, sum(vals)


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


def env_alone_rate(env_id: str, env_kwargs: dict[str, Any], steps: int) -> tuple[float, float]:
    """(steps/s, CPU seconds per step of this process plus its server) of one env alone."""
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401
    from mtsandbox.cli.bench_scaling import random_steps

    kw = {k: v for k, v in env_kwargs.items() if k != "max_episode_steps"}
    env = gym.make(env_id, **kw)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        random_steps(env, 200)  # warm-up: numba compile, server settling

        def cpu() -> float:
            server = getattr(env.unwrapped, "server", None)
            proc = getattr(server, "proc", None)
            return (time.process_time()
                    + (_proc_cpu_s(proc.pid) if proc is not None and proc.poll() is None else 0.0))

        c, t = cpu(), time.perf_counter()
        random_steps(env, steps)
        wall, used = time.perf_counter() - t, cpu() - c
        return steps / wall, used / steps
    finally:
        env.close()


class _Timed:
    """Wraps ``obj.<name>`` (an instance attribute shadowing the method) and adds its wall time
    to :attr:`seconds`; :meth:`restore` puts the original back."""

    def __init__(self, obj: Any, name: str) -> None:
        self.obj, self.name, self.seconds = obj, name, 0.0
        self._inner = getattr(obj, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return self._inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        setattr(obj, name, timed)

    def restore(self) -> None:
        try:
            delattr(self.obj, self.name)  # the class's method shows through again
        except AttributeError:
            setattr(self.obj, self.name, self._inner)


def measure(cfg: Any, iters: int, env_steps: int) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO

    from mtsandbox.agents import train as tr
    from mtsandbox.agents.policy import make_policy_kwargs

    cores = os.cpu_count() or 1
    fig: dict[str, Any] = {"config": cfg.to_dict(), "cores": cores, "n_envs": cfg.n_envs,
                           "n_steps": cfg.n_steps, "n_epochs": cfg.n_epochs,
                           "batch_size": cfg.batch_size, "machine": platform.node(),
                           "torch": torch.__version__, "device": tr.resolve_device(cfg.device),
                           "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    fig["env_alone_steps_per_s"], fig["env_cpu_s_per_step"] = env_alone_rate(
        cfg.env_id, dict(cfg.env_kwargs), env_steps)

    t = time.perf_counter()
    venv = tr.make_vec_env(cfg)
    try:
        venv.reset()
        fig["startup_s"] = time.perf_counter() - t
        model = PPO("CnnPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                    n_epochs=cfg.n_epochs, learning_rate=cfg.lr, gamma=cfg.gamma,
                    gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
                    clip_range=cfg.clip, max_grad_norm=cfg.max_grad_norm,
                    policy_kwargs=make_policy_kwargs(cfg.features_dim), seed=cfg.seed,
                    device=fig["device"], verbose=0)
        grouped = cfg.rollout == "overlap"
        if grouped:  # two env groups half a step apart (agents/overlap.py)
            from mtsandbox.agents.overlap import use_overlapped_rollouts

            use_overlapped_rollouts(model)
        threads = tr.ThreadSwitchCallback()
        per_iter = cfg.n_steps * cfg.n_envs
        _, callback = model._setup_learn(per_iter * (2 * iters + 2), threads)
        callback.on_training_start(locals(), globals())
        roll, upd = [], []
        timed = {"wait": 0.0, "send": 0.0, "inference": 0.0}
        learner_cpu = machine_busy = machine_total = 0.0
        assert model.env is not None
        wait, send = ("step_group_wait", "step_group_async") if grouped else ("step_wait",
                                                                              "step_async")
        timers = {"wait": _Timed(model.env, wait), "send": _Timed(model.env, send),
                  "inference": _Timed(model.policy, "forward")}
        for i in range(iters + 1):
            before = {k: tm.seconds for k, tm in timers.items()}
            c0, (b0, tot0) = time.process_time(), _cpu_times()
            t0 = time.perf_counter()
            model.collect_rollouts(model.env, callback, model.rollout_buffer, cfg.n_steps)
            t1 = time.perf_counter()
            c1, (b1, tot1) = time.process_time(), _cpu_times()
            model.train()
            t2 = time.perf_counter()
            if i > 0:  # the first iteration warms up caches and allocators
                roll.append(t1 - t0)
                upd.append(t2 - t1)
                for k, tm in timers.items():
                    timed[k] += tm.seconds - before[k]
                learner_cpu += c1 - c0
                machine_busy, machine_total = machine_busy + b1 - b0, machine_total + tot1 - tot0
        for tm in timers.values():
            tm.restore()
        vec_steps = cfg.n_steps * len(roll)
        fig["rollout_steps_per_s"] = per_iter * len(roll) / sum(roll)
        fig["update_ms_per_sample"] = 1000 * sum(upd) / (per_iter * len(upd))
        fig["rollout_env_wait_ms_per_step"] = 1000 * timed["wait"] / vec_steps
        fig["rollout_learner_ms_per_step"] = 1000 * (sum(roll) - timed["wait"]) / vec_steps
        # The learner's own work split further: the policy's forward pass (inference), sending
        # the actions to the workers (step_async: pickling, pipe writes, waking them) and the
        # rest (obs to tensor, rollout buffer, callbacks, SB3 bookkeeping).
        fig["rollout_learner_split_ms_per_step"] = {
            "inference": 1000 * timed["inference"] / vec_steps,
            "send_actions": 1000 * timed["send"] / vec_steps,
            "buffer_callbacks_other": 1000 * (sum(roll) - timed["wait"] - timed["send"]
                                              - timed["inference"]) / vec_steps}
        # CPU the learner process itself spends per env step while collecting (its torch
        # threads included), and how busy the whole machine is during rollouts.
        fig["rollout_learner_cpu_ms_per_env_step"] = 1000 * learner_cpu / (per_iter * len(roll))
        fig["rollout_cpu_utilisation"] = (machine_busy / machine_total if machine_total > 0
                                          else None)
        b0, tot0 = _cpu_times()
        t = time.perf_counter()
        model.learn(per_iter * iters, callback=tr.ThreadSwitchCallback(),
                    reset_num_timesteps=False)
        wall = time.perf_counter() - t
        b1, tot1 = _cpu_times()
        fig["end_to_end_steps_per_s"] = per_iter * iters / wall
        fig["cpu_utilisation"] = (b1 - b0) / (tot1 - tot0) if tot1 > tot0 else None
    finally:
        tr.close_quietly(venv)
    upd_s = fig["update_ms_per_sample"] / 1000
    env_all = fig["env_alone_steps_per_s"] * min(cores, cfg.n_envs)
    fig["ceiling_steps_per_s"] = 1.0 / (1.0 / env_all + upd_s)
    fig["end_to_end_over_ceiling"] = fig["end_to_end_steps_per_s"] / fig["ceiling_steps_per_s"]
    env_cpu = min(cores / fig["env_cpu_s_per_step"],
                  fig["env_alone_steps_per_s"] * cfg.n_envs)
    fig["cpu_ceiling_steps_per_s"] = 1.0 / (1.0 / env_cpu + upd_s)
    fig["end_to_end_over_cpu_ceiling"] = (fig["end_to_end_steps_per_s"]
                                          / fig["cpu_ceiling_steps_per_s"])
    # The same CPU-bound ceiling once the learner's own rollout CPU (inference, buffer, pipes)
    # is paid too: what a perfectly overlapped rollout could reach on these cores. The gap
    # between the two CPU-bound ceilings is the learner's share; the gap between this one and
    # end to end is idle CPU (the lockstep waits) plus scheduling.
    learner_s = fig["rollout_learner_cpu_ms_per_env_step"] / 1000
    env_learner_cpu = min(cores / (fig["env_cpu_s_per_step"] + learner_s),
                          fig["env_alone_steps_per_s"] * cfg.n_envs)
    fig["cpu_ceiling_with_learner_steps_per_s"] = 1.0 / (1.0 / env_learner_cpu + upd_s)
    fig["end_to_end_over_cpu_ceiling_with_learner"] = (
        fig["end_to_end_steps_per_s"] / fig["cpu_ceiling_with_learner_steps_per_s"])
    # Where an env step's time goes (ms per env step; the three add up to 1 / the parts'
    # end-to-end rate): SB3's lockstep rollout never overlaps the first two.
    n = cfg.n_envs
    parts = {"waiting_for_envs": fig["rollout_env_wait_ms_per_step"] / n,
             "learner_inference_and_buffer": fig["rollout_learner_ms_per_step"] / n,
             "update": fig["update_ms_per_sample"]}
    total = sum(parts.values())
    fig["ms_per_env_step"] = parts
    fig["share_of_step_time"] = {k: v / total for k, v in parts.items()}
    fig["parts_end_to_end_steps_per_s"] = 1000.0 / total
    return fig


def run(args: argparse.Namespace) -> dict[str, Any]:
    from mtsandbox.agents.config import load_config

    cfg = load_config(args.config, args.overrides)
    fig = measure(cfg, args.iters, args.env_steps)
    rows = [("env steps/s, one env alone", f"{fig['env_alone_steps_per_s']:.0f}"),
            (f"start-up, {cfg.n_envs} envs (build + first reset)", f"{fig['startup_s']:.1f} s"),
            ("cores one env alone keeps busy (its process + server)",
             f"{fig['env_cpu_s_per_step'] * fig['env_alone_steps_per_s']:.2f}"),
            ("rollout steps/s (collect_rollouts)", f"{fig['rollout_steps_per_s']:.0f}"),
            ("  per step: learner waiting for the envs (ms)",
             f"{fig['rollout_env_wait_ms_per_step']:.2f}"),
            ("  per step: learner's own work: inference, buffer (ms)",
             f"{fig['rollout_learner_ms_per_step']:.2f}"),
            ("    of which inference / sending actions / buffer, callbacks, rest (ms)",
             " / ".join(f"{v:.2f}" for v in fig["rollout_learner_split_ms_per_step"].values())),
            ("  learner process CPU per env step during rollouts (ms)",
             f"{fig['rollout_learner_cpu_ms_per_env_step']:.2f}"),
            ("  CPU utilisation during rollouts (all processes)",
             f"{100 * fig['rollout_cpu_utilisation']:.0f}%"
             if fig["rollout_cpu_utilisation"] is not None else "-"),
            (f"update ms per sample ({cfg.n_epochs} epochs)",
             f"{fig['update_ms_per_sample']:.2f}"),
            ("end-to-end steps/s (learn)", f"{fig['end_to_end_steps_per_s']:.0f}"),
            ("CPU utilisation while learning (all processes)",
             f"{100 * fig['cpu_utilisation']:.0f}%" if fig["cpu_utilisation"] is not None
             else "-"),
            (f"ceiling from the parts ({fig['cores']} cores)",
             f"{fig['ceiling_steps_per_s']:.0f}"),
            ("CPU-bound ceiling (cores / CPU cost of a step alone)",
             f"{fig['cpu_ceiling_steps_per_s']:.0f}"),
            ("where an env step's time goes: waiting for envs / learner's inference + "
             "buffer / update",
             " / ".join(f"{100 * v:.0f}%" for v in fig["share_of_step_time"].values())),
            ("CPU-bound ceiling paying the learner's rollout CPU too (perfect overlap)",
             f"{fig['cpu_ceiling_with_learner_steps_per_s']:.0f}"),
            ("end-to-end / CPU-bound ceiling with the learner",
             f"{100 * fig['end_to_end_over_cpu_ceiling_with_learner']:.0f}%"),
            ("end-to-end / CPU-bound ceiling", f"{100 * fig['end_to_end_over_cpu_ceiling']:.0f}%"),
            ("end-to-end / ceiling", f"{100 * fig['end_to_end_over_ceiling']:.0f}%")]
    w = max(len(r[0]) for r in rows)
    print(f"bench train: {cfg.env_id}, {cfg.n_envs} envs, n_steps {cfg.n_steps}, "
          f"rollout {cfg.rollout}, device {fig['device']}")
    for name, val in rows:
        print(f"  {name:<{w}}  {val}")
    name = args.label or Path(args.config).stem
    path = Path(args.json) if args.json else OUT / f"train_{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fig, indent=2, default=str))
    print(f"  -> {path}")
    return fig
