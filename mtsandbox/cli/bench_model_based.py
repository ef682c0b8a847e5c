"""Model-based agent benchmark: prefill with recorded random + scripted episodes, train the
model-based agent (collect -> world model -> imagination actor-critic) for N env steps, then
report trunks per episode of the agent vs a uniformly random policy (and a PPO checkpoint when
given), plus world-model prediction error at 1/5/15 steps vs copy-last-frame and the
state-tracking probe. Small defaults (~10 min on 2 CPU cores).

    mtsandbox bench model-based --out runs/mb --steps 3000 [--ppo runs/<run>]
    python scripts/bench_model_based.py [options]               # the same, as a script
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, cast

import numpy as np


def play(policy, env_id: str, n_episodes: int, seed: int, record_dir: Path | None = None,
         max_steps: int = 500) -> list[float]:
    """Trunks (sum of hidden_performance) per episode. ``policy``: 'random', an object with
    ``predict`` (state kept across steps, reset each episode)."""
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401
    from mtsandbox.tools.recording import RecordEpisodes

    env: Any = gym.make(env_id)
    if record_dir is not None:
        env = RecordEpisodes(env, record_dir, bodies_each_step=False)
    rng = np.random.default_rng(seed)
    out = []
    try:
        for ep in range(n_episodes):
            obs, _ = env.reset(seed=seed + 1000 + ep)
            state, start, trunks = None, True, 0.0
            for _ in range(max_steps):
                if policy == "random":
                    a = int(rng.integers(env.action_space.n))
                else:
                    a, state = policy.predict(obs, state=state,
                                              episode_start=np.array([start]))
                    a = int(np.asarray(a).reshape(-1)[0])
                start = False
                obs, _r, term, trunc, info = env.step(a)
                trunks += float(info.get("hidden_performance", 0.0))
                if term or trunc:
                    break
            out.append(trunks)
    finally:
        env.close()
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--env-id", default="MinetestSandbox/TreePunchShaped-v0")
    ap.add_argument("--out", default="runs/model_based")
    ap.add_argument("--prefill-data", default=None,
                    help="recorded episodes to prefill the replay (default: collect 2 random + "
                         "2 scripted episodes)")
    ap.add_argument("--steps", type=int, default=3000, help="env steps of agent training")
    ap.add_argument("--pretrain-updates", type=int, default=150)
    ap.add_argument("--wm-updates", type=int, default=20, help="updates per collect_steps")
    ap.add_argument("--collect-steps", type=int, default=250)
    ap.add_argument("--time-limit", type=float, default=420.0, help="cap on learn() wall time")
    ap.add_argument("--eval-episodes", type=int, default=3)
    ap.add_argument("--world-model", default=None,
                    help="start from this trained world model (mtsandbox train-world-model "
                         "--out DIR writes DIR/model); its data dir is a good --prefill-data")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ppo", default=None, help="PPO checkpoint / run dir to compare with")
    ap.add_argument("--probe-trials", type=int, default=6)
    ap.add_argument("--mb", nargs="*", default=[], metavar="KEY=VALUE",
                    help="MBConfig overrides, e.g. act=plan plan_horizon=10 (see MBConfig)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)

    from mtsandbox.agents.model_based import MBConfig, ModelBasedAgent
    from mtsandbox.agents.wm_diagnostics import open_loop_errors, state_tracking_probe
    from mtsandbox.agents.world_model import as_seqdata
    from mtsandbox.cli.train_world_model import collect

    out = Path(args.out)
    t0 = time.perf_counter()
    prefill = Path(args.prefill_data) if args.prefill_data else out / "prefill"
    prefill_steps = 0
    if not args.prefill_data:
        collect(args.env_id, prefill, 2, 2, args.seed)
    pre_eps = as_seqdata(prefill)
    prefill_steps = sum(len(e) - 1 for e in pre_eps)
    print(f"prefill: {len(pre_eps)} episodes, {prefill_steps} env steps "
          f"({time.perf_counter() - t0:.0f}s)")

    import yaml

    from mtsandbox.agents.config import ConfigError

    try:
        over = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.mb)}
        cfg = MBConfig.from_dict({
            "env_id": args.env_id, "seed": args.seed, "prefill_steps": 0,
            "pretrain_updates": args.pretrain_updates, "wm_updates": args.wm_updates,
            "collect_steps": args.collect_steps, "batch": args.batch, **over})
    except ValueError as e:
        msg = e if isinstance(e, ConfigError) else f"--mb takes KEY=VALUE items ({e})"
        print(f"bench model-based: {msg}")
        return 2
    wm = None
    if args.world_model:
        from mtsandbox.agents.world_model import load_world_model

        wm, wm_meta = load_world_model(args.world_model)
        print(f"world model from {args.world_model} ({wm_meta.get('step')} updates)")
    agent = ModelBasedAgent(args.env_id, config=cfg, record_dir=out / "episodes", world_model=wm)
    agent.add_data(pre_eps)
    agent.learn(args.steps, time_limit_s=args.time_limit)
    agent.close()
    env_steps = prefill_steps + agent.num_timesteps
    agent.save(out / "agent")
    print(f"agent: {env_steps} env steps in all ({prefill_steps} prefill + "
          f"{agent.num_timesteps} own), saved {out / 'agent'} ({time.perf_counter() - t0:.0f}s)")

    held = as_seqdata(out / "episodes")[-2:] or pre_eps
    errs = open_loop_errors(agent.wm, held, horizons=(1, 5, 15), context=5, n_windows=48)
    print("world-model open-loop error on the agent's last episodes (MSE/pixel):")
    for h, er in errs.items():
        print(f"  h={h:>2}: model {er['model']:.5f}  copy-last {er['copy_last']:.5f}")
    probe = state_tracking_probe(agent.wm, args.env_id, n_trials=args.probe_trials,
                                 seed=args.seed + 7)
    print(f"state-tracking probe: trunk IoU model {probe['iou_model']:.3f} vs baseline "
          f"{probe['iou_baseline_before_turn_back']:.3f} ({probe['n_trials']} trials)")

    res: dict = {}
    n = args.eval_episodes
    res["model_based"] = play(agent, args.env_id, n, args.seed, out / "eval_mb")
    res["random"] = play("random", args.env_id, n, args.seed)
    if args.ppo:
        from mtsandbox.agents.checkpoints import load_checkpoint

        ppo, meta = load_checkpoint(args.ppo)
        # SB3 keeps image spaces channel-first (VecTransposeImage): both mean plain RGB
        if tuple(cast(tuple, ppo.observation_space.shape)) not in ((64, 64, 3), (3, 64, 64)):
            print(f"PPO checkpoint observes {ppo.observation_space.shape} (frame stack / "
                  "grayscale): compare with `mtsandbox eval` instead; skipped here")
        else:
            res["ppo"] = play(ppo, args.env_id, n, args.seed)
            res["ppo_train_steps"] = meta.get("step")
    from mtsandbox.agents.evaluate import mean_ci95

    print(f"trunks per episode ({n} episodes, seeds {args.seed + 1000}.., mean and 95% CI):")
    for k in ("model_based", "random", "ppo"):
        if k in res:
            v = mean_ci95(res[k])
            res[f"{k}_summary"] = v
            extra = (f"  (PPO trained {res['ppo_train_steps']} steps vs MB {env_steps})"
                     if k == "ppo" else "")
            print(f"  {k:>11}: {v['mean']:.2f} ± {v['ci95'] or float('nan'):.2f}  "
                  f"{res[k]}{extra}")
    report = {"env_steps": env_steps, "config": cfg.to_dict(),
              "open_loop": {str(h): e for h, e in errs.items()},
              "probe": {k: v for k, v in probe.items() if k != "trials"}, "trunks": res,
              "history": agent.history, "wall_s": time.perf_counter() - t0}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {out / 'report.json'} ({report['wall_s']:.0f}s total)")
    return 0
