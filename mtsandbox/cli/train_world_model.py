"""Collect random + scripted (TreeChopper) episodes with RecordEpisodes, train the world model,
and print open-loop prediction error at 1/5/15 steps vs copy-last-frame and the
state-tracking probe. Small defaults (~5 min on 2 CPU cores).

    mtsandbox train-world-model --out runs/wm --random-eps 4 --scripted-eps 4 --steps 400
    python scripts/train_world_model.py [options]               # the same, as a script
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def collect(env_id: str, root: Path, n_random: int, n_scripted: int, seed: int,
            max_steps: int = 500, repeat: int = 3) -> None:
    """Random episodes use sticky actions (repeat 1..``repeat``) so turns come in runs."""
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401
    from mtsandbox.agents.scripted import TreeChopper
    from mtsandbox.tools.recording import RecordEpisodes

    rng = np.random.default_rng(seed)
    for kind, n in (("random", n_random), ("scripted", n_scripted)):
        if n <= 0:
            continue
        env = RecordEpisodes(gym.make(env_id), root / kind, bodies_each_step=False)
        try:
            for _ in range(n):
                env.reset(seed=int(rng.integers(0, 2**31 - 1)))
                chop = TreeChopper(env)
                a, left = 0, 0
                for _t in range(max_steps):
                    if kind == "scripted":
                        # mostly the chopper, some random actions so all actions are seen
                        a = chop.act() if rng.random() > 0.15 else int(rng.integers(12))
                    else:
                        if left <= 0:
                            a, left = int(rng.integers(12)), int(rng.integers(1, repeat + 1))
                        left -= 1
                    _, _, term, trunc, _ = env.step(a)
                    if term or trunc:
                        break
        finally:
            env.close()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--env-id", default="MinetestSandbox/TreePunchShaped-v0")
    ap.add_argument("--out", default="runs/world_model")
    ap.add_argument("--data", default=None, help="use recorded episodes here instead of collecting")
    ap.add_argument("--random-eps", type=int, default=4)
    ap.add_argument("--scripted-eps", type=int, default=4)
    ap.add_argument("--steps", type=int, default=400, help="world-model updates")
    ap.add_argument("--time-limit", type=float, default=300.0, help="training wall-time cap (s)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=16)
    ap.add_argument("--probe-trials", type=int, default=8)
    ap.add_argument("--probe-k", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)

    from mtsandbox.agents.wm_diagnostics import (open_loop_errors, save_rollouts,
                                                 state_tracking_probe)
    from mtsandbox.agents.world_model import as_seqdata, train_world_model

    out = Path(args.out)
    t0 = time.perf_counter()
    data_root = Path(args.data) if args.data else out / "data"
    if not args.data:
        collect(args.env_id, data_root, args.random_eps, args.scripted_eps, args.seed)
        print(f"collected into {data_root} ({time.perf_counter() - t0:.0f}s)")
    eps = as_seqdata(data_root)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(eps))
    n_test = max(1, len(eps) // 5)
    test = [eps[i] for i in order[:n_test]]
    train = [eps[i] for i in order[n_test:]] or test
    print(f"{len(train)} train / {len(test)} held-out episodes, "
          f"{sum(len(e) for e in train)} train frames")
    model, hist = train_world_model(train, steps=args.steps, batch=args.batch,
                                    seq_len=args.seq_len, seed=args.seed,
                                    time_limit_s=args.time_limit)
    model.save(out / "model", env_id=args.env_id,
               extra={"data": str(data_root), "history": hist[-5:]})
    print(f"saved {out / 'model'} ({time.perf_counter() - t0:.0f}s)")

    errs = open_loop_errors(model, test, horizons=(1, 5, 15), context=5, n_windows=64,
                            seed=args.seed)
    print("open-loop prediction error on held-out episodes (MSE per pixel, [0,1] scale):")
    print(f"  {'horizon':>7} {'model':>9} {'copy-last':>9}")
    for h, e in errs.items():
        print(f"  {h:>7} {e['model']:9.5f} {e['copy_last']:9.5f}")
    rolls = save_rollouts(model, test, out / "rollouts", n=3)
    print(f"rollout strips + recordings: {out / 'rollouts'} "
          f"(mtsandbox replay {out / 'rollouts'})")
    probe = state_tracking_probe(model, args.env_id, n_trials=args.probe_trials, k=args.probe_k,
                                 seed=args.seed + 1, out_dir=out / "probe")
    print(f"state-tracking probe (k={probe['k']}, {probe['n_trials']} trials): trunk IoU "
          f"model {probe['iou_model']:.3f} vs baseline(frame before turning back) "
          f"{probe['iou_baseline_before_turn_back']:.3f}; full open loop "
          f"{probe['iou_full_open_loop']:.3f}; real F0 vs return {probe['iou_f0_vs_return']:.3f};"
          f" recon F0 {probe['iou_recon_f0']:.3f}; return-frame MSE model "
          f"{probe['mse_model']:.4f} vs baseline {probe['mse_baseline']:.4f}")
    report = {"open_loop": {str(h): e for h, e in errs.items()}, "probe": probe,
              "history": hist, "rollouts": rolls, "wall_s": time.perf_counter() - t0}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {out / 'report.json'} ({report['wall_s']:.0f}s total)")
    return 0
