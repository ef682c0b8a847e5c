"""Learning benchmark: PPO (sandbox CNN), or any training config (``algo: model_based`` too),
vs a uniformly random policy on one env id.

Reports trunks dug per episode (episode sum of ``info["hidden_performance"]``; episodes are 500
steps on the TreePunch envs) for the random policy and for PPO evaluated every K env steps
during training, plus wall time and end-to-end env steps/s (training: env stepping + PPO
updates, evaluations excluded; random: env stepping only). Prints a table and writes JSON.

    mtsandbox bench learning                                   # TreePunchShaped, 100k steps
    mtsandbox bench learning --steps 20000 --eval-every 5000 --n-envs 4 --json out.json
    mtsandbox bench learning --env-id SOME/Other-v0 --set lr=1e-4 ent_coef=0.02
    mtsandbox bench learning --config treepunch_mb_cpu --steps 12000 --eval-every 4000
    mtsandbox bench learning --compare 'ppo_seed*.json' 'mb_seed*.json' --json cmp.json
                                            # final trunks and the sample-efficiency curve
    python scripts/bench_learning.py [options]                 # the same, as a script
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env-id", default="MinetestSandbox/TreePunchShaped-v0")
    p.add_argument("--config", default="treepunch_ppo",
                   help="base training config (path or name under experiments/)")
    p.add_argument("--steps", type=int, default=100_000, help="PPO training env steps")
    p.add_argument("--eval-every", type=int, default=10_000, help="evaluate PPO every K steps")
    p.add_argument("--eval-episodes", type=int, default=3, help="episodes per PPO evaluation")
    p.add_argument("--random-episodes", type=int, default=10, help="random-policy episodes")
    p.add_argument("--n-envs", type=int, default=None, help="training envs (default: config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="further config overrides")
    p.add_argument("--run-dir", default="runs", help="root folder for the PPO run")
    p.add_argument("--json", dest="json_out", default=None,
                   help="output JSON (default results/bench_learning_<time>.json)")
    p.add_argument("--no-random", action="store_true", help="skip the random baseline")
    p.add_argument("--no-eval-at-start", action="store_true",
                   help="skip the evaluation of the untrained agent (step 0)")
    p.add_argument("--compare", nargs=2, metavar=("GLOB_A", "GLOB_B"), default=None,
                   help="train nothing: compare the final trunks per episode of two sets of "
                        "stored runs (one JSON per seed, the seed as the unit; scipy Welch "
                        "interval of the difference); writes --json if given")
    p.add_argument("--target", nargs=2, metavar=("GLOB", "TRUNKS"), default=None,
                   help="train nothing: does one set of stored runs reach TRUNKS per episode? "
                        "Mean over seeds at every evaluation step with its interval, and the "
                        "verdict at the last one (mean, and the interval's lower end, against "
                        "TRUNKS); with --reference GLOB, also Welch differences at the steps "
                        "both sets evaluated; writes --json if given")
    p.add_argument("--reference", default=None, metavar="GLOB",
                   help="with --target: runs to compare with at shared evaluation steps")
    p.add_argument("--level", type=float, default=0.95,
                   help="with --target: two-sided confidence level of the interval that "
                        "decides the verdict, e.g. 0.9833 for a Bonferroni level over three "
                        "looks at one claim (default 0.95; the 95%% interval is always "
                        "stored too)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p.parse_args(argv)


def _fmt(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "—"
    ci = f" ± {s['ci95']:.2f}" if s.get("ci95") is not None else ""
    return f"{s['mean']:.2f}{ci}"


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


def final_trunks(path: Path) -> tuple[float, float | None]:
    """(mean trunks per episode at the last evaluation, training env steps/s or None) of one
    stored run."""
    d = _agent(path)
    try:
        trunks = float(d["curve"][-1]["trunks_per_episode"]["mean"])
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{path}: not a bench learning file (no learning curve)") from e
    rate = d.get("train_env_steps_per_s")
    return trunks, (float(rate) if rate is not None else None)


def _agent(path: Path) -> dict[str, Any]:
    """The trained agent's part of a bench learning file (``agent``; older files: ``ppo``)."""
    d = json.loads(Path(path).read_text())
    a = d.get("agent") or d.get("ppo")
    if not isinstance(a, dict):
        raise ValueError(f"{path}: not a bench learning file (no agent)")
    return a


def garwood_rate_ci(counts: list[float], alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Garwood) Poisson interval of a rate per episode from the pooled trunk count of
    ``counts`` (one total per episode, or episode means times episodes, pooled): never zero-width,
    also when every seed scored the same (e.g. 0)."""
    from scipy import stats

    k, n = float(sum(counts)), max(1, len(counts))
    lo = stats.chi2.ppf(alpha / 2, 2 * k) / 2 if k > 0 else 0.0
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return float(lo / n), float(hi / n)


def _side_ci(means: list[float], n_eps: list[int], level: float = 0.95) -> list[float]:
    """Across-seed t interval of the mean at two-sided ``level``, hulled with the Garwood
    interval of the pooled episodes at the same level (the t interval is zero-width when the
    seeds agree exactly), its lower end clipped at 0 (a rate of trunks cannot be negative)."""
    from mtsandbox.experiments.stats import mean_t_ci

    lo, hi = mean_t_ci(means, alpha=1 - level)
    pooled: list[float] = []
    for m, n in zip(means, n_eps, strict=True):  # each seed's episodes at its mean rate
        pooled += [m] * n
    glo, ghi = garwood_rate_ci(pooled, alpha=1 - level)
    return [max(0.0, min(lo, glo)), max(hi, ghi)]


def curves(a: list[Path], b: list[Path]) -> list[dict[str, Any]]:
    """Sample efficiency: at every evaluation step that all runs of both sides share, the mean
    trunks per episode of each side over seeds (t interval, hulled with the exact Poisson
    interval of the pooled episodes so that it is never zero-width) and the Welch interval of
    mean(b) - mean(a) (scipy)."""
    import numpy as np
    from scipy import stats

    def per_step(p: Path) -> dict[int, tuple[float, int]]:
        return {int(r["step"]): (float(r["trunks_per_episode"]["mean"]),
                                 int(r["trunks_per_episode"].get("n") or 1))
                for r in _agent(p).get("curve", [])}

    ca, cb = [per_step(p) for p in a], [per_step(p) for p in b]
    common = sorted(set.intersection(*(set(c) for c in ca + cb))) if ca and cb else []
    out = []
    for step in common:
        xa, xb = np.array([c[step][0] for c in ca]), np.array([c[step][0] for c in cb])
        na, nb = [c[step][1] for c in ca], [c[step][1] for c in cb]
        row: dict[str, Any] = {"step": step,
                               "a": {"mean": float(xa.mean()), "per_seed": xa.tolist(),
                                     "ci95": _side_ci(xa.tolist(), na)},
                               "b": {"mean": float(xb.mean()), "per_seed": xb.tolist(),
                                     "ci95": _side_ci(xb.tolist(), nb)},
                               "diff_b_minus_a": float(xb.mean() - xa.mean())}
        if len(xa) >= 2 and len(xb) >= 2 and (xa.std() > 0 or xb.std() > 0):
            ci = stats.ttest_ind(xb, xa, equal_var=False).confidence_interval()
            row["diff_ci95"] = [float(ci.low), float(ci.high)]
        out.append(row)
    return out


def compare_runs(a: list[Path], b: list[Path]) -> dict[str, Any]:
    """Final trunks per episode of runs ``a`` vs ``b``, seed as the unit: means with t
    intervals and the Welch interval of mean(b) - mean(a) (scipy)."""
    import numpy as np
    from scipy import stats

    ra, rb = [final_trunks(p) for p in a], [final_trunks(p) for p in b]
    xa, xb = np.array([t for t, _ in ra]), np.array([t for t, _ in rb])
    if len(xa) < 2 or len(xb) < 2:
        raise ValueError("need at least 2 runs on each side")
    ci = stats.ttest_ind(xb, xa, equal_var=False).confidence_interval()
    return {"a": {"files": [str(p) for p in a], "per_seed": xa.tolist(), "mean": xa.mean(),
                  "ci95": _side_ci(xa.tolist(), _final_n(a))},
            "b": {"files": [str(p) for p in b], "per_seed": xb.tolist(), "mean": xb.mean(),
                  "ci95": _side_ci(xb.tolist(), _final_n(b))},
            "train_env_steps_per_s": {"a": [r for _, r in ra], "b": [r for _, r in rb]},
            "diff_b_minus_a": float(xb.mean() - xa.mean()),
            "diff_ci95": [float(ci.low), float(ci.high)],
            "curve": curves(a, b)}


def _final_n(paths: list[Path]) -> list[int]:
    """Episodes of each run's last evaluation."""
    return [int(_agent(p)["curve"][-1]["trunks_per_episode"].get("n") or 1) for p in paths]


def target_runs(paths: list[Path], target: float, reference: list[Path] | None = None,
                level: float = 0.95) -> dict[str, Any]:
    """Whether runs ``paths`` (one per seed) reach ``target`` trunks per episode: at every
    evaluation step they share, the mean over seeds and its interval (:func:`_side_ci`) at
    two-sided ``level`` (``"ci"``; the 95% one is kept as ``"ci95"``); the verdict at the
    last step: ``"reached"`` when the level interval's lower end is >= ``target``,
    ``"not reached"`` when its upper end is below it, else ``"inconclusive"`` (the mean
    reaches it or not, the seeds cannot tell). ``reference``: Welch differences against
    other runs at the steps both sets evaluated (:func:`curves`)."""
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"--level must lie strictly between 0 and 1, got {level:g}")
    if len(paths) < 2:
        raise ValueError("need at least 2 runs")
    per = [{int(r["step"]): r["trunks_per_episode"] for r in _agent(p).get("curve", [])}
           for p in paths]
    steps = sorted(set.intersection(*(set(c) for c in per)))
    if not steps:
        raise ValueError("the runs share no evaluation step")
    rows: list[dict[str, Any]] = []
    for st in steps:
        x = [float(c[st]["mean"]) for c in per]
        n_eps = [int(c[st].get("n") or 1) for c in per]
        rows.append({"step": st, "mean": float(np.mean(x)), "per_seed": x,
                     "ci95": _side_ci(x, n_eps), "ci": _side_ci(x, n_eps, level)})
    last = rows[-1]
    lo, hi = last["ci"]
    verdict = "reached" if lo >= target else "not reached" if hi < target else "inconclusive"
    out: dict[str, Any] = {
        "files": [str(p) for p in paths], "target": target, "level": level, "curve": rows,
        "final": last, "mean_reaches_target": bool(last["mean"] >= target),
        "verdict": verdict,
        "first_step_mean_reaches_target": next((r["step"] for r in rows
                                                if r["mean"] >= target), None),
        "train_env_steps_per_s": [final_trunks(p)[1] for p in paths]}
    if reference:
        out["reference"] = {"files": [str(p) for p in reference],
                            "curve": curves(reference, paths)}
    return out


def _runs(pattern: str) -> list[Path]:
    """The stored run files a glob names, sorted."""
    import glob

    return sorted(Path(p) for p in glob.glob(pattern))


def run(args: argparse.Namespace) -> int:
    if getattr(args, "target", None):
        paths = _runs(args.target[0])
        ref = _runs(args.reference) if args.reference else None
        try:
            res = target_runs(paths, float(args.target[1]), ref, level=args.level)
        except (ValueError, OSError, KeyError, TypeError) as e:
            print(f"bench learning --target: {e}")
            return 2
        for r in res["curve"]:
            print(f"{r['step']:>7,} steps: {r['mean']:.2f} [{r['ci'][0]:.2f}, "
                  f"{r['ci'][1]:.2f}] ({100 * res['level']:g}%) per seed {r['per_seed']}")
        print(f"target {res['target']:g} trunks/episode at {res['final']['step']:,} steps: "
              f"{res['verdict']} (mean {'>=' if res['mean_reaches_target'] else '<'} target)")
        if args.json_out:
            res["label"] = args.target[0]
            Path(args.json_out).write_text(json.dumps(res, indent=1, default=float))
        return 0
    if getattr(args, "compare", None):
        sides = [_runs(g) for g in args.compare]
        try:
            res = compare_runs(*sides)
        except (ValueError, OSError) as e:
            print(f"bench learning --compare: {e}")
            return 2
        print(f"A {res['a']['mean']:.2f} {res['a']['per_seed']}  B {res['b']['mean']:.2f} "
              f"{res['b']['per_seed']}  B-A {res['diff_b_minus_a']:+.2f} "
              f"[{res['diff_ci95'][0]:+.2f}, {res['diff_ci95'][1]:+.2f}]")
        if args.json_out:
            res["label_a"], res["label_b"] = args.compare
            Path(args.json_out).write_text(json.dumps(res, indent=1, default=float))
        return 0
    from rich.console import Console
    from rich.table import Table

    from mtsandbox.agents.evaluate import evaluate
    from mtsandbox.agents.train import train
    from mtsandbox.agents.config import ConfigError, load_config

    console = Console(soft_wrap=True)
    overrides = [f"env_id={args.env_id}", f"total_steps={args.steps}", f"seed={args.seed}",
                 f"eval_every={args.eval_every}", f"eval_episodes={args.eval_episodes}",
                 f"run_dir={args.run_dir}", "checkpoint_every=0"]
    if args.n_envs is not None:
        overrides.append(f"n_envs={args.n_envs}")
    try:
        cfg = load_config(args.config, overrides + list(args.overrides))
    except ConfigError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        return 2

    result: dict[str, Any] = {"env_id": cfg.env_id, "config": cfg.to_dict(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    if not args.no_random:
        console.print(f"random policy: {args.random_episodes} episodes on {cfg.env_id} ...")
        rnd = evaluate("random", env_id=cfg.env_id, env_kwargs=cfg.env_kwargs,
                       n_episodes=args.random_episodes, seed=args.seed + 12345)
        result["random"] = {
            "trunks_per_episode": rnd.summary["hidden_performance"],
            "observed_return": rnd.summary["observed_return"],
            "episode_length": rnd.summary["length"],
            "env_steps": rnd.env_steps, "wall_s": rnd.wall_s,
            "env_steps_per_s": rnd.env_steps / rnd.wall_s if rnd.wall_s > 0 else None,
        }

    who = "PPO" if cfg.algo == "ppo" else cfg.algo
    envs = f"{cfg.n_envs} env(s)" if cfg.algo == "ppo" else "1 env"
    console.print(f"{who}: {cfg.total_steps} steps, {envs}, eval every "
                  f"{cfg.eval_every} steps x {cfg.eval_episodes} episodes ...")
    tr = train(cfg, eval_at_start=not args.no_eval_at_start, eval_at_end=True)
    result["algo"] = cfg.algo
    result["agent"] = {
        "run_dir": str(tr.run_dir),
        "final_checkpoint": str(tr.final_checkpoint) if tr.final_checkpoint else None,
        "train_steps": tr.steps, "wall_s": tr.wall_s, "learn_wall_s": tr.learn_wall_s,
        "eval_wall_s": tr.eval_wall_s,
        "train_env_steps_per_s": tr.train_steps_per_s,
        "curve": [{"step": r["step"], "elapsed_s": r["elapsed_s"],
                   "train_wall_s": r["elapsed_s"] - r["eval_wall_s_total"],
                   "trunks_per_episode": r["summary"]["hidden_performance"],
                   "observed_return": r["summary"]["observed_return"],
                   "episode_length": r["summary"]["length"]} for r in tr.eval_history],
    }

    table = Table(title=f"Learning benchmark on {cfg.env_id} (trunks per episode, mean ± 95% CI)")
    for col in ("policy", "step", "trunks / episode", "observed return", "ep. length",
                "train wall s"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    if "random" in result:
        r = result["random"]
        table.add_row("random", "—", _fmt(r["trunks_per_episode"]), _fmt(r["observed_return"]),
                      _fmt(r["episode_length"]), "—")
    for row in result["agent"]["curve"]:
        table.add_row(cfg.algo, str(row["step"]), _fmt(row["trunks_per_episode"]),
                      _fmt(row["observed_return"]), _fmt(row["episode_length"]),
                      f"{row['train_wall_s']:.1f}")
    console.print(table)
    ppo = result["agent"]
    console.print(f"{cfg.algo}: {ppo['train_steps']} steps in {ppo['wall_s']:.1f} s wall "
                  f"({ppo['learn_wall_s']:.1f} s training, {ppo['eval_wall_s']:.1f} s of it "
                  f"evaluating); end-to-end training {ppo['train_env_steps_per_s']:.1f} env "
                  "steps/s (evaluations and start-up excluded)", highlight=False)
    if "random" in result and result["random"]["env_steps_per_s"]:
        console.print(f"random policy: {result['random']['env_steps_per_s']:.1f} env steps/s "
                      f"(env only)", highlight=False)

    out = Path(args.json_out or f"results/bench_learning_{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"wrote {out}")
    return 0
