"""Parallel scaling: N environments (one real server each) stepping random actions at once.

    mtsandbox bench scaling [--envs 1 2] [--steps 3000]

Each env runs in its own process (as SB3's SubprocVecEnv would), warms up, waits at a barrier,
then runs a fixed number of steps; aggregate steps/s = total steps / slowest worker's time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier


def random_steps(env: Any, steps: int) -> None:
    """``steps`` random actions, resetting whenever an episode ends (the benchmarks' load)."""
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()


def _worker(env_id: str, steps: int, barrier: Barrier, out: mp.Queue, seed: int) -> None:
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401

    env = gym.make(env_id)
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(200):
            env.step(env.action_space.sample())
        barrier.wait()
        t = time.perf_counter()
        random_steps(env, steps)
        out.put(time.perf_counter() - t)
    finally:
        env.close()


def measure(env_id: str, n: int, steps: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(env_id, steps, barrier, out, i)) for i in range(n)]
    for p in procs:
        p.start()
    try:
        times = [out.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return n * steps / max(times)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--env-id", default="MinetestSandbox/TreePunchShaped-v0")
    ap.add_argument("--envs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--json", help="also write the figures here")


def run(args: argparse.Namespace) -> dict:
    rates = {n: measure(args.env_id, n, args.steps) for n in args.envs}
    base = rates[args.envs[0]]
    print(f"{'envs':>5} {'steps/s':>10} {'scaling':>8}   ({os.cpu_count()} cores)")
    for n, r in rates.items():
        print(f"{n:>5} {r:>10.0f} {r / base:>7.2f}x")
    figures = {"cores": os.cpu_count(), "steps_per_s": {str(n): round(r) for n, r in rates.items()},
               "scaling_vs_first": {str(n): round(r / base, 3) for n, r in rates.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    run(ap.parse_args(argv))


if __name__ == "__main__":
    main()
