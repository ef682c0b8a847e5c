"""Benchmark the lockstep bridge and the TreePunch env in one run; prints figures.

    mtsandbox bench env [--steps 5000] [--size 64]      (or python scripts/bench_env.py)

Figures: bare bridge round trips/s (tiny ping messages), bridge steps/s without rendering,
env steps/s with RGB observations (random actions), soft-reset time, their ratios, and the
UDP wake datagrams the bridge sent per env step (bridge.py: a wait past 0.5 ms sends one).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING, cast

import gymnasium as gym
import numpy as np

from mtsandbox.envs.bridge import ACTION_DTYPE

if TYPE_CHECKING:
    from mtsandbox.envs.core import MinetestEnv


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--resets", type=int, default=50)
    ap.add_argument("--json", help="also write the figures here")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    run(ap.parse_args(argv))


def measure(args: argparse.Namespace, sync_every_step: bool) -> dict:
    """One env in one lockstep mode: bare ping rate, bridge step rate, env rate, resets."""
    env = gym.make("MinetestSandbox/TreePunchShaped-v0", width=args.size, height=args.size,
                   sync_every_step=sync_every_step)
    u = cast("MinetestEnv", env.unwrapped)
    try:
        env.reset(seed=0)
        for _ in range(300):  # warm-up: numba compile, caches, server settling
            env.step(env.action_space.sample())
        br = u.bridge
        if br is None:
            raise RuntimeError("bench: the env has no bridge after reset()")
        t = time.perf_counter()
        for _ in range(args.steps):
            br.ping()
        ping_rate = args.steps / (time.perf_counter() - t)

        acts = np.zeros(1, ACTION_DTYPE)
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        for _ in range(args.steps):
            acts["fwd"], acts["dyaw"] = rng.integers(-1, 2), rng.integers(-1, 2) * 1500
            br.step(acts)
        bridge_step_rate = args.steps / (time.perf_counter() - t)

        env.reset(seed=1)
        wakes0 = br.wakes_sent
        t = time.perf_counter()
        n = 0
        while n < args.steps:
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            n += 1
            if term or trunc:
                env.reset()
        env_rate = n / (time.perf_counter() - t)
        wakes_per_step = (br.wakes_sent - wakes0) / n  # UDP wake datagrams (bridge.py)

        times = []
        for i in range(args.resets):
            t = time.perf_counter()
            env.reset(seed=100 + i)
            times.append(time.perf_counter() - t)
    finally:
        env.close()
    return {
        "bare_bridge_roundtrips_per_s": round(ping_rate),
        "bridge_steps_per_s_no_render": round(bridge_step_rate),
        f"env_steps_per_s_{args.size}x{args.size}_rgb": round(env_rate),
        "env_over_bare_bridge": round(env_rate / ping_rate, 3),
        "env_over_bridge_steps": round(env_rate / bridge_step_rate, 3),
        "soft_reset_ms_median": round(1000 * float(np.median(times)), 2),
        "soft_reset_ms_p90": round(1000 * float(np.percentile(times, 90)), 2),
        "wake_datagrams_per_env_step": round(wakes_per_step, 4),
    }


def run(args: argparse.Namespace) -> dict:
    """Both lockstep modes: the default (the mod serves many steps per engine step) and
    sync_every_step (one engine step per env step, what a real client watching needs)."""
    figures: dict = {"cores": os.cpu_count()}
    for mode, sync in (("batched", False), ("sync_every_step", True)):
        figures[mode] = measure(args, sync)
        print(f"-- lockstep mode: {mode}")
        for k, v in figures[mode].items():
            print(f"   {k:36s} {v}")
    b, s = figures["batched"], figures["sync_every_step"]
    key = f"env_steps_per_s_{args.size}x{args.size}_rgb"
    figures["env_batched_over_bare_bridge_sync"] = round(b[key] / s["bare_bridge_roundtrips_per_s"],
                                                         3)
    print(f"-- env (batched) / bare bridge (sync_every_step): "
          f"{figures['env_batched_over_bare_bridge_sync']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
