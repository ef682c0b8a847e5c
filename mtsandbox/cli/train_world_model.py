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
            max_steps: int = 500, repeat: int = 3, n_ppo: int = 0,
            ppo_checkpoint: str | None = None, n_look: int = 0) -> None:
    """Record episodes into ``root/<source>/``. Random episodes use sticky actions (repeat
    1..``repeat``) so turns come in runs; scripted ones are the TreeChopper with 15% random
    actions; ``n_ppo`` episodes play a PPO checkpoint (sampled actions); ``n_look``
    ("lookaround") episodes alternate stretches of the TreeChopper (towards trees), sticky
    random actions and look-arounds: turn 2..8 times one way, then as many times back (the
    motion the state-tracking probe tests; random play seldom turns away and back that far)."""
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401
    from mtsandbox.agents.scripted import TreeChopper
    from mtsandbox.tools.recording import RecordEpisodes

    rng = np.random.default_rng(seed)
    ppo = None
    if n_ppo > 0:
        from mtsandbox.agents.checkpoints import load_checkpoint

        if not ppo_checkpoint:
            raise SystemExit("train-world-model: --ppo-eps needs --ppo-checkpoint")
        ppo, _ = load_checkpoint(ppo_checkpoint, device="cpu")

    def sticky(a: int, left: int, n_act: int) -> tuple[int, int]:
        """A random action held for 1..repeat steps: (action, steps it is still held)."""
        if left <= 0:
            a, left = int(rng.integers(n_act)), int(rng.integers(1, repeat + 1))
        return a, left - 1

    for kind, n in (("random", n_random), ("scripted", n_scripted), ("ppo", n_ppo),
                    ("lookaround", n_look)):
        if n <= 0:
            continue
        env = RecordEpisodes(gym.make(env_id), root / kind, bodies_each_step=False)
        try:
            for _ in range(n):
                obs, _ = env.reset(seed=int(rng.integers(0, 2**31 - 1)))
                chop = TreeChopper(env)
                a, left = 0, 0
                plan: list[int] = []
                mode, mode_left = "random", 0
                names = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
                n_act = len(names)
                L, R = names.index("turn_left"), names.index("turn_right")
                for _t in range(max_steps):
                    if kind == "lookaround":
                        if not plan and mode_left <= 0:
                            u = rng.random()
                            if u < 0.4:
                                j = int(rng.integers(2, 9))
                                d = L if rng.random() < 0.5 else R
                                plan = [d] * j + [R if d == L else L] * j
                            mode = "chop" if u >= 0.7 else "random"
                            mode_left = int(rng.integers(5, 30))
                        if plan:
                            a = plan.pop(0)
                        else:
                            mode_left -= 1
                            if mode == "chop":
                                a = chop.act()
                            else:
                                a, left = sticky(a, left, n_act)
                    elif kind == "ppo":
                        assert ppo is not None
                        a = int(ppo.predict(obs, deterministic=False)[0])
                    elif kind == "scripted":
                        # mostly the chopper, some random actions so all actions are seen
                        a = chop.act() if rng.random() > 0.15 else int(rng.integers(n_act))
                    else:
                        a, left = sticky(a, left, n_act)
                    obs, _, term, trunc, _ = env.step(a)
                    if term or trunc:
                        break
        finally:
            env.close()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--env-id", default="MinetestSandbox/TreePunchShaped-v0")
    ap.add_argument("--out", default="runs/world_model")
    ap.add_argument("--data", nargs="+", default=None,
                    help="recording roots/episode dirs to train on instead of collecting")
    ap.add_argument("--random-eps", type=int, default=4)
    ap.add_argument("--scripted-eps", type=int, default=4)
    ap.add_argument("--ppo-eps", type=int, default=0)
    ap.add_argument("--lookaround-eps", type=int, default=0,
                    help="episodes of chopper / random / turn-away-and-back play")
    ap.add_argument("--ppo-checkpoint", default=None)
    ap.add_argument("--collect-only", action="store_true",
                    help="record the episodes into OUT/data and stop (train later with --data)")
    ap.add_argument("--steps", type=int, default=400, help="world-model updates")
    ap.add_argument("--time-limit", type=float, default=300.0, help="training wall-time cap (s)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--wm", nargs="*", default=[], metavar="KEY=VALUE",
                    help="world-model config overrides (WMConfig fields), e.g. image_size=64")
    ap.add_argument("--held-out", type=float, default=0.2, help="share of episodes held out")
    ap.add_argument("--windows", type=int, default=256,
                    help="random held-out windows of the open-loop error (>= 1)")
    ap.add_argument("--probe-trials", type=int, default=20)
    ap.add_argument("--probe-k", type=int, default=6)
    ap.add_argument("--probe-min-trunk-frac", type=float, default=0.03,
                    help="share of the view the tree must cover before turning away")
    ap.add_argument("--report", default=None, help="also copy report.json here")
    ap.add_argument("--eval-only", default=None, metavar="MODEL_DIR",
                    help="skip training: evaluate this saved world model on the held-out split")
    ap.add_argument("--init", default=None, metavar="MODEL_DIR",
                    help="continue training this saved world model (its config, a fresh "
                         "optimiser); the one --wm item it takes is copy_gate=true, which adds "
                         "a copy gate to a model without one (warm start)")
    ap.add_argument("--probe-level", type=float, default=0.95,
                    help="confidence level of the intervals that decide the state-tracking "
                         "verdict (e.g. 0.975 for a second look at the registered score)")
    ap.add_argument("--open-loop-level", type=float, default=0.95,
                    help="confidence level of the open-loop gain intervals that decide its "
                         "verdict (e.g. 0.975 for a second registered look at the bar)")
    ap.add_argument("--probe-seed", type=int, default=None,
                    help="seed of the state-tracking probe's trials (default: --seed + 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def split_episodes(eps: list, held_out: float, seed: int) -> tuple[list, list]:
    """``(train, test)``: a held-out split by episode (never by frame)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(eps))
    n_test = max(1, round(len(eps) * held_out))
    test = [eps[i] for i in order[:n_test]]
    train = [eps[i] for i in order[n_test:]] or test
    return train, test


def latent_probes(model, episodes: list, seed: int) -> list[dict]:
    """Linear probes of tree_in_view / tree_in_memory from the GRU state (memory) and from the
    encoder's embedding of the current frame only (no memory: its tree_in_memory score is what
    the current view alone gives away), grouped by episode, with shuffled-label controls."""
    from mtsandbox.interp.probes import probe_dataset
    from mtsandbox.interp.world_model import wm_activation_dataset

    ds = wm_activation_dataset(model, episodes)
    concepts = ["tree_in_view", "tree_in_memory"]
    for c, y in ds.labels.items():  # the scenarios' task state, where the recordings hold it
        y = y[~np.isnan(y)]
        if c not in (*concepts, "trunk_centre", "dig_next") and len(y) >= 100 \
                and min(int((y > 0.5).sum()), int((y <= 0.5).sum())) >= 20:
            concepts.append(c)
    res = probe_dataset(ds, layers=["wm_deter", "wm_embed"], concepts=concepts, seed=seed)
    return [r.to_dict() for r in res]


def run(args: argparse.Namespace) -> int:
    import torch
    import yaml

    torch.set_num_threads(args.threads)

    from mtsandbox.agents.config import ConfigError
    from mtsandbox.agents.wm_diagnostics import (BRIER_CONTROLS, OPEN_LOOP_BAR, frame_metrics,
                                                 open_loop_errors, open_loop_verdict,
                                                 save_rollouts, state_tracking_probe)
    from mtsandbox.agents.world_model import WMConfig, as_seqdata, downsample, train_world_model
    from mtsandbox.tools.recording import RecordingError

    try:
        over = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.wm)}
        cfg = WMConfig.from_dict(over)
    except ValueError as e:  # ConfigError, or an item without '='
        msg = e if isinstance(e, ConfigError) else f"--wm takes KEY=VALUE items ({e})"
        print(f"train-world-model: {msg}")
        return 2
    if args.init and over and over != {"copy_gate": True}:
        print("train-world-model: with --init the saved model's config rules; the one --wm "
              f"item taken is copy_gate=true (got {' '.join(args.wm)})")
        return 2
    for name in ("probe_level", "open_loop_level"):
        if not 0.0 < getattr(args, name) < 1.0:
            print(f"train-world-model: --{name.replace('_', '-')} must lie between 0 and 1, "
                  f"not {getattr(args, name)}")
            return 2
    if args.windows < 1:
        print(f"train-world-model: --windows must be at least 1, not {args.windows}")
        return 2
    out = Path(args.out)
    t0 = time.perf_counter()
    roots = [Path(d) for d in args.data] if args.data else [out / "data"]
    if not args.data:
        collect(args.env_id, roots[0], args.random_eps, args.scripted_eps, args.seed,
                n_ppo=args.ppo_eps, ppo_checkpoint=args.ppo_checkpoint,
                n_look=args.lookaround_eps)
        print(f"collected into {roots[0]} ({time.perf_counter() - t0:.0f}s)")
        if args.collect_only:
            return 0
    try:
        eps = as_seqdata(roots)
    except RecordingError as e:
        print(f"train-world-model: {e}")
        return 2
    if not eps:
        print(f"train-world-model: no recorded episodes with 2+ frames under {roots}")
        return 2
    saved = None
    wm_meta: dict = {}
    if args.eval_only or args.init:  # a saved model: its config (and image size) rule
        from mtsandbox.agents.world_model import WorldModelError, load_world_model

        try:
            saved, wm_meta = load_world_model(args.eval_only or args.init)
        except WorldModelError as e:
            print(f"train-world-model: {e}")
            return 2
        if args.init and over:
            from mtsandbox.agents.world_model import with_copy_gate

            if saved.cfg.copy_gate:
                print(f"train-world-model: {args.init} already has a copy gate")
                return 2
            saved = with_copy_gate(saved)
            print(f"added a copy gate to {args.init} (warm start)")
        cfg = saved.cfg
    for ep in eps:  # the model's observation size, once (not per batch)
        ep.obs = downsample(ep.obs, cfg.image_size)
    train, test = split_episodes(eps, args.held_out, args.seed)
    n_digs = int(sum((ep.reward >= 0.5).sum() for ep in train))
    print(f"{len(train)} train / {len(test)} held-out episodes, "
          f"{sum(len(ep) for ep in train)} train frames, {n_digs} digs")
    if args.eval_only:
        assert saved is not None
        model, hist = saved, list(wm_meta.get("history") or [])
        print(f"evaluating {args.eval_only} ({model.train_steps} updates)")
    else:
        if saved is not None:
            print(f"continuing {args.init} ({saved.train_steps} updates)")
        model, hist = train_world_model(train, steps=args.steps, config=cfg, batch=args.batch,
                                        model=saved,
                                        seq_len=args.seq_len, lr=args.lr, seed=args.seed,
                                        time_limit_s=args.time_limit, log_every=100)
        model.save(out / "model", env_id=args.env_id,
                   extra={"data": [str(r) for r in roots], "history": hist[-5:]})
        print(f"saved {out / 'model'} ({time.perf_counter() - t0:.0f}s)")

    errs = open_loop_errors(model, test, horizons=(1, 5, 15), context=5, n_windows=args.windows,
                            seed=args.seed, level=args.open_loop_level)
    S = model.cfg.image_size
    print(f"open-loop prediction error on held-out episodes (MSE per pixel at {S}x{S}):")
    print(f"  {'horizon':>7} {'model':>9} {'copy-last':>9} {'gain':>6} "
          f"({100 * args.open_loop_level:g}% CI, episodes resampled)")
    for h, er in errs.items():
        lo, hi = er["gain_ci"] or (float("nan"), float("nan"))
        print(f"  {h:>7} {er['model']:9.5f} {er['copy_last']:9.5f} {er['gain']:6.1%} "
              f"[{lo:.1%}, {hi:.1%}] ({er['n_episodes']} episodes, {er['n']} windows)")
    ol_verdict = open_loop_verdict(errs)
    print(f"  gain >= {OPEN_LOOP_BAR:.0%} at every horizon (interval's lower end): {ol_verdict}")
    fm = frame_metrics(model, test)
    print(f"held-out frames {fm['n_frames']} ({fm['n_digs']} digs): reward AUROC "
          f"{fm['reward_auroc_prior']:.3f} (prior) / {fm['reward_auroc_post']:.3f} (filtered); "
          f"reconstruction trunk IoU {fm['recon_trunk_iou']:.3f}"
          + (f" (trunk map {fm['trunk_map_iou']:.3f})" if "trunk_map_iou" in fm else "")
          + "; aux AUROC "
          f"{fm.get('aux_auroc')}")
    rolls = save_rollouts(model, test, out / "rollouts", n=3)
    print(f"rollout strips + recordings: {out / 'rollouts'} "
          f"(mtsandbox replay {out / 'rollouts'})")
    probe = state_tracking_probe(model, args.env_id, n_trials=args.probe_trials, k=args.probe_k,
                                 seed=args.seed + 1 if args.probe_seed is None
                                 else args.probe_seed, out_dir=out / "probe",
                                 min_trunk_frac=args.probe_min_trunk_frac,
                                 level=args.probe_level)
    if probe["n_trials"] < args.probe_trials:
        print(f"train-world-model: the state-tracking probe found a tree to face in "
              f"{probe['n_trials']} of the {args.probe_trials} trials asked for")
    dv, dn = probe["diff_vs_baseline"], probe["diff_vs_no_memory"]
    print(f"state-tracking probe (k={probe['k']}, {probe['n_trials']} trials): trunk IoU "
          f"model {probe['iou_model']:.3f} vs frame before turning back "
          f"{probe['iou_baseline_before_turn_back']:.3f} (diff {dv['mean']:+.3f} +- "
          f"{dv['ci95'] or float('nan'):.3f}) vs no memory {probe['iou_no_memory']:.3f} (diff "
          f"{dn['mean']:+.3f} +- {dn['ci95'] or float('nan'):.3f}); real F0 vs return "
          f"{probe['iou_f0_vs_return']:.3f}; recon F0 {probe['iou_recon_f0']:.3f}")
    if "tracking_verdict" in probe:
        gains = ", ".join(
            f"{c} {probe[f'brier_{c}']:.4f} (gain {g['mean']:+.4f} +- "
            f"{g['ci95'] or float('nan'):.4f})"
            for c in BRIER_CONTROLS for g in [probe[f"brier_gain_vs_{c}"]])
        print(f"  registered score, Brier of the trunk map at the return (lower is better): "
              f"model {probe['brier_model']:.4f} (mode latents {probe['brier_model_mode']:.4f}) "
              f"vs {gains}: {probe['tracking_verdict']} (verdict at "
              f"{100 * probe['tracking_level']:g}%)")
    if "diff_belief_vs_no_memory" in probe:
        db = probe["diff_belief_vs_no_memory"]
        print(f"  belief (tree_in_view head) after imagining the turn back: model "
              f"{probe['p_tree_model']:.3f} vs no memory {probe['p_tree_no_memory']:.3f} (diff "
              f"{db['mean']:+.3f} +- {db['ci95'] or float('nan'):.3f}); turned away "
              f"{probe['p_tree_away']:.3f}; real tree in view at the return "
              f"{probe['tree_in_view_return']:.2f}")
    latent = latent_probes(model, test, args.seed)
    for r in latent:
        print(f"latent probe {r['concept']:>14} from {r['layer']:>8}: balanced accuracy "
              f"{r['balanced_accuracy']:.3f} (shuffled-label control "
              f"{r['control_balanced_accuracy']:.3f}; {r['n_test']} held-out rows)")
    report = {"config": model.cfg.to_dict(), "latent_probes": latent,
              "data": [str(r) for r in roots],
              "n_train_episodes": len(train), "n_test_episodes": len(test),
              "n_train_frames": int(sum(len(e) for e in train)), "n_train_digs": n_digs,
              "updates": model.train_steps, "batch": args.batch, "seq_len": args.seq_len,
              "open_loop": {str(h): e for h, e in errs.items()},
              "open_loop_bar": OPEN_LOOP_BAR, "open_loop_verdict": ol_verdict, "frames": fm,
              "probe": probe,
              "history": hist, "rollouts": rolls, "wall_s": time.perf_counter() - t0}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {out / 'report.json'} ({report['wall_s']:.0f}s total)")
    return 0
