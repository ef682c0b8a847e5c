"""The main job, end to end: ``mtsandbox demo``.

1. trains PPO (the 3-conv + FC policy) on TreePunchShaped-v0 with real Minetest servers,
2. evaluates the checkpoint against a random policy, recording the episodes,
3. writes an interpretability probe report for the checkpoint,
4. prints where everything is and how to open the replay viewer (``--serve`` opens it).

The default budget is 60k env steps of the 2-core PPO config; ``--figures FILE`` writes the
stage times and trunks per episode as JSON (results/bench/demo.json is what the README's
demo sentence is generated from: ``mtsandbox figures``). ``--steps`` for more.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=60_000,
                        help="PPO env steps (default 60000)")
    parser.add_argument("--n-envs", type=int, default=None,
                        help="parallel servers (default: the config's, treepunch_ppo_cpu)")
    parser.add_argument("--episodes", type=int, default=2, help="evaluation episodes")
    parser.add_argument("--out", default="runs/demo", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve", action="store_true", help="serve the replay viewer at the end")
    parser.add_argument("--figures", metavar="FILE",
                        help="write stage times and trunks per episode here (JSON)")


def cli(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mtsandbox.agents.evaluate import evaluate
    from mtsandbox.agents.train import train
    from mtsandbox.agents.config import load_config
    from mtsandbox.interp.report import make_report

    console = Console()
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("treepunch_ppo_cpu", overrides=[
        f"total_steps={args.steps}", f"seed={args.seed}", "eval_every=0",
        f"checkpoint_every={args.steps}", f"run_dir={out / 'runs'}"]
        + ([f"n_envs={args.n_envs}"] if args.n_envs else []))
    console.rule("1/3 training PPO on real Minetest servers")
    res = train(cfg)
    train_wall_s = time.perf_counter() - t_start
    ckpt = res.final_checkpoint
    console.print(f"checkpoint: {ckpt}  ({res.steps} steps, {res.wall_s:.0f} s)")

    console.rule("2/3 evaluation (recorded) vs random")
    rec = out / "episodes"
    trained = evaluate(ckpt, n_episodes=args.episodes, seed=args.seed, record_dir=rec)
    trained.print_table()
    rand = evaluate("random", env_id=cfg.env_id, n_episodes=args.episodes, seed=args.seed)
    rand.print_table()
    console.print("trunks per episode: PPO {:.1f} vs random {:.1f}".format(
        trained.summary["hidden_performance"]["mean"], rand.summary["hidden_performance"]["mean"]))

    console.rule("3/3 interpretability probe report")
    report = make_report(ckpt, n_episodes=1, max_steps=200, seed=args.seed,
                         out_dir=out / "probe_report", log=lambda m: console.print(m))
    console.rule("done")
    if args.figures:
        fig = {"steps": res.steps, "n_envs": cfg.n_envs, "episodes": args.episodes,
               "seed": args.seed, "cores": os.cpu_count(),
               "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "train_wall_s": train_wall_s, "total_wall_s": time.perf_counter() - t_start,
               "ppo_trunks": trained.summary["hidden_performance"]["mean"],
               "random_trunks": rand.summary["hidden_performance"]["mean"]}
        Path(args.figures).parent.mkdir(parents=True, exist_ok=True)
        Path(args.figures).write_text(json.dumps(fig, indent=2) + "\n")
        console.print(f"figures           : {args.figures}")
    console.print(f"recorded episodes : {rec}")
    console.print(f"probe report      : {report}")
    console.print(f"replay viewer     : mtsandbox replay {rec}")
    console.print(f"TensorBoard       : tensorboard --logdir {res.run_dir / 'tb'}")
    if args.serve:
        from mtsandbox.tools.replay_server import serve

        serve(rec)
    return 0
