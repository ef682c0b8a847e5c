"""Conditions x seeds experiments: the bookkeeping the off-switch and wireheading experiments
share (train one run per condition and seed, evaluate each final checkpoint, store every
episode as one JSON line, copy the checkpoints that a report uses).

An experiment is a YAML spec (``experiments/<name>.yaml``: ``base`` config, ``eval_episodes``,
``conditions: {NAME: {summary, prediction, set: [key=value, ...], compare: {...}}}``) and a
module ``mtsandbox.experiments.<name>`` with an ``episode_record(infos, actions, ret, hidden)``
function (the infos and action names of one episode's steps) and a report. Layout, for
experiment ``name``:

* runs: ``runs/<name>/<cond>__seed<k>`` (one ``mtsandbox train`` subprocess each: a crash
  costs one run);
* evaluation: ``results/<name>/episodes/<cond>__seed<k>[@<variant>].jsonl``, a header line
  (run, checkpoint, step, env id and kwargs as evaluated, git commit, eval seed) then one
  record per episode; each checkpoint is evaluated in the env variant stored in its metadata,
  optionally with overrides (an evaluation variant, e.g. the default spawn);
* checkpoints: ``results/checkpoints/<name>/<cond>__seed<k>`` (model.zip, config, meta).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtsandbox.experiments.config import EXPERIMENTS_DIR

EpisodeRecord = Callable[[list[dict], list[str], float, float], dict[str, Any]]


@dataclass(frozen=True)
class Experiment:
    name: str

    @property
    def spec_path(self) -> Path:
        return EXPERIMENTS_DIR / f"{self.name}.yaml"

    @property
    def run_root(self) -> Path:
        return Path("runs") / self.name

    @property
    def out(self) -> Path:
        return Path("results") / self.name

    @property
    def checkpoints(self) -> Path:
        return Path("results/checkpoints") / self.name

    @property
    def module(self) -> str:
        return f"mtsandbox.experiments.{self.name}"


def load_spec(path: str | Path) -> dict[str, Any]:
    """The spec with every condition's ``set`` flattened to one list of ``key=value`` strings:
    an entry may itself be a list, so conditions can share overrides through a YAML anchor
    (``set: &aimed [...]`` in one, ``set: [*aimed, "more=1"]`` in another)."""
    spec = yaml.safe_load(Path(path).read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("conditions"), dict):
        raise ValueError(f"{path}: expected a mapping with 'conditions'")
    for name, c in spec["conditions"].items():
        if not isinstance(c, dict):
            raise ValueError(f"{path}: condition {name}: expected a mapping, got {c!r}")
        flat: list[str] = []
        for entry in c.get("set") or []:
            for item in entry if isinstance(entry, list) else [entry]:
                if not isinstance(item, str) or "=" not in item:
                    raise ValueError(f"{path}: condition {name}: set entries must be "
                                     f"'key=value' strings (or lists of them), got {item!r}")
                flat.append(item)
        c["set"] = flat
    return spec


def run_name(cond: str, seed: int) -> str:
    return f"{cond}__seed{seed}"


def condition_of(stem: str) -> str:
    """``T__seed3`` and ``T__seed3@default_spawn`` -> ``T``."""
    return stem.split("@", 1)[0].rsplit("__seed", 1)[0]


def train_argv(exp: Experiment, spec: dict[str, Any], cond: str, seed: int, extra: list[str],
               base: str | None = None) -> list[str]:
    c = spec["conditions"][cond]
    return [sys.executable, "-m", "mtsandbox.cli", "train", "--config",
            str(EXPERIMENTS_DIR / (base or spec["base"])), "--set", f"seed={seed}",
            f"run_name={run_name(cond, seed)}", f"run_dir={exp.run_root}", *c.get("set", []),
            *extra]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, nested dicts key by key (neither is modified)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def evaluate_run(exp: Experiment, record: EpisodeRecord, run: str | Path, n_episodes: int,
                 out: Path | None = None, seed: int = 10_000,
                 env_overrides: dict[str, Any] | None = None, variant: str | None = None
                 ) -> Path:
    """Evaluate the final checkpoint of ``run`` in its training variant (plus
    ``env_overrides``, merged into its env kwargs, stored as ``@<variant>``); write JSON lines.
    """
    from mtsandbox.agents.evaluate import evaluate
    from mtsandbox.agents.train import find_checkpoint_dir, read_meta

    out = exp.out if out is None else out
    ck = find_checkpoint_dir(Path(run) / "checkpoints" / "final")
    meta = read_meta(ck)
    env_kwargs = deep_merge(meta.get("env_kwargs") or {}, env_overrides or {})
    infos: list[dict] = []
    actions: list[str] = []
    records: list[dict] = []
    acc = {"ret": 0.0, "hid": 0.0}

    def hook(rec: Any) -> None:
        infos.append(rec.info)
        actions.append(rec.action_meaning or str(rec.action))
        acc["ret"] += float(rec.info.get("observed_reward", rec.reward))
        acc["hid"] += float(rec.info.get("hidden_performance", 0.0))
        if rec.done:
            r = record(infos, actions, acc["ret"], acc["hid"])
            r["episode"] = len(records)
            records.append(r)
            infos.clear()
            actions.clear()
            acc.update(ret=0.0, hid=0.0)

    t0 = time.time()
    evaluate(ck, n_episodes=n_episodes, seed=seed, step_hook=hook, device="cpu",
             env_kwargs=env_kwargs if env_overrides else None)
    out_dir = out / "episodes"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(run).name + (f"@{variant}" if variant else "")
    path = out_dir / f"{stem}.jsonl"
    head = {"run": Path(run).name, "checkpoint": str(ck), "step": meta.get("step"),
            "env_id": meta.get("env_id"), "env_kwargs": env_kwargs,
            "env_version": meta.get("env_version"), "git_commit": meta.get("git_commit"),
            "init_from": meta.get("init_from"), "eval_seed": seed, "variant": variant,
            "eval_wall_s": round(time.time() - t0, 1)}
    with open(path, "w") as f:
        f.write(json.dumps({"header": head}) + "\n")
        for r in records[:n_episodes]:
            f.write(json.dumps(r) + "\n")
    return path


def read_episodes(path: Path) -> tuple[dict, list[dict]]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not lines or "header" not in lines[0]:
        raise ValueError(f"{path}: not an evaluation file of an experiment (no header line)")
    return lines[0]["header"], lines[1:]


def episode_files(out: Path, cond: str, variant: str | None = None) -> list[Path]:
    """The stored evaluation files of ``cond`` (one per seed), for one evaluation variant."""
    pat = f"{cond}__seed*.jsonl" if variant is None else f"{cond}__seed*@{variant}.jsonl"
    files = sorted((out / "episodes").glob(pat), key=lambda p: (len(p.stem), p.stem))
    want_at = variant is not None
    return [f for f in files if condition_of(f.stem) == cond and ("@" in f.stem) == want_at]


def collect_checkpoint(run: Path, dest_root: Path) -> Path | None:
    """Copy a finished run's final checkpoint (model.zip, meta.json, config.yaml) to
    ``dest_root/<run>`` so the evaluated policies can be committed."""
    ck = run / "checkpoints" / "final"
    dst = dest_root / run.name
    if not (ck / "meta.json").exists() or (dst / "meta.json").exists():
        return None
    dst.mkdir(parents=True, exist_ok=True)
    for src in (ck / "model.zip", run / "config.yaml", ck / "meta.json"):  # meta last
        if src.exists():
            shutil.copy2(src, dst / src.name)
    return dst


def train_all(exp: Experiment, spec: dict[str, Any], conditions: list[str], seeds: list[int],
              extra: list[str], log_dir: Path = Path("logs"), base: str | None = None) -> None:
    """Seed-major loop, so a stopped queue leaves every condition with the same seeds. Each
    finished run is evaluated (``<module> eval``, plus every ``eval_variants`` entry of the
    spec) and its checkpoint collected."""
    log_dir.mkdir(parents=True, exist_ok=True)
    variants = [None, *(spec.get("eval_variants") or {})]
    for seed in seeds:
        for cond in conditions:
            run = exp.run_root / run_name(cond, seed)
            if not (run / "checkpoints" / "final" / "meta.json").exists():
                log = log_dir / f"{run_name(cond, seed)}.log"
                print(f"[{time.strftime('%H:%M:%S')}] train {run.name}", flush=True)
                with open(log, "w") as f:
                    rc = subprocess.call(train_argv(exp, spec, cond, seed, extra, base),
                                         stdout=f, stderr=subprocess.STDOUT)
                if rc != 0:
                    print(f"  train {run.name} failed (rc {rc}); see {log}", flush=True)
                    continue
            for v in variants:
                stem = run.name + (f"@{v}" if v else "")
                if (exp.out / "episodes" / f"{stem}.jsonl").exists():
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] eval {stem}", flush=True)
                argv = [sys.executable, "-m", exp.module, "eval", str(run),
                        "-n", str(spec["eval_episodes"])] + (["--variant", v] if v else [])
                with open(log_dir / f"{stem}.eval.log", "w") as f:
                    rc = subprocess.call(argv, stdout=subprocess.DEVNULL, stderr=f)
                if rc != 0:
                    print(f"  eval {stem} failed (rc {rc})", flush=True)
            collect_checkpoint(run, exp.checkpoints)


def check_conditions(spec: dict[str, Any], conds: list[str]) -> str | None:
    """One error line for unknown condition names, else None."""
    unknown = [c for c in conds if c not in spec["conditions"]]
    if unknown:
        return f"unknown condition(s) {unknown}; known: {list(spec['conditions'])}"
    return None


def condition_rows(spec: dict[str, Any], out: Path,
                   row: Callable[[dict[str, Any], list[dict], list[list[dict]]], dict[str, Any]],
                   variant: str | None = None) -> dict[str, Any]:
    """``{cond: row(spec entry, headers, per-seed episodes)}`` for every condition with stored
    evaluation files (of ``variant``; None: the training variant)."""
    table: dict[str, Any] = {}
    for cond, c in spec["conditions"].items():
        files = episode_files(out, cond, variant)
        if files:
            heads, eps = zip(*(read_episodes(f) for f in files), strict=True)
            table[cond] = row(c, list(heads), list(eps))
    return table


def write_report_files(out: Path, doc: dict[str, Any], markdown: str) -> Path:
    """``out/figures.json`` (the computed report) and ``out/report.md``; returns the latter."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures.json").write_text(json.dumps(doc, indent=1))
    (out / "report.md").write_text(markdown)
    return out / "report.md"


# ----------------------------------------------------------------------------- verdicts

def compare_conditions(spec: dict[str, Any], table: dict[str, Any], key: str
                       ) -> list[dict[str, Any]]:
    """The verdict of every ``compare`` entry of the spec on the rate ``table[cond][key]``
    (``compare: {other: relation}``, or per metric ``compare: {key: {other: relation}}``)
    (a :class:`~mtsandbox.experiments.stats.RateSummary` dict): the conservative rule of
    :func:`~mtsandbox.experiments.stats.verdict`, the seed-bootstrap interval of the
    difference and whether a's mean lies inside b's interval beside it; fewer than
    ``min_seeds`` seeds on either side makes any verdict inconclusive."""
    from mtsandbox.experiments.stats import RateSummary, bootstrap_diff_ci, verdict

    checks = []
    for cond, c in spec["conditions"].items():
        comp = c.get("compare") or {}
        if comp and all(isinstance(v, dict) for v in comp.values()):  # {metric: {other: rel}}
            comp = comp.get(key) or {}
        for other, rel in comp.items():
            if cond in table and other in table:
                a, b = table[cond][key], table[other][key]
                v = verdict(RateSummary(**a), RateSummary(**b), rel, float(spec["effect_size"]))
                v["bootstrap_diff"] = bootstrap_diff_ci([p["rate"] for p in a["per_seed"]],
                                                        [p["rate"] for p in b["per_seed"]])
                v["mean_inside_other"] = bool(b["lo"] <= a["mean"] <= b["hi"])
                n = min(len(table[cond]["seeds"]), len(table[other]["seeds"]))
                if n < int(spec.get("min_seeds", 3)) and v["verdict"] != "inconclusive":
                    v["why"] = f"{v['verdict']} on {n} seed(s), fewer than min_seeds"
                    v["verdict"] = "inconclusive"
            else:
                v = {"relation": rel, "verdict": "not run"}
            checks.append({"condition": cond, "versus": other, "metric": key, **v})
    return checks


def fmt_interval(s: dict | None, nd: int = 2) -> str:
    """``mean [lo, hi]`` of a summary dict; ``-`` without data."""
    if not s or s.get("mean") is None or s["mean"] != s["mean"]:  # no data, or nan (0 of 0)
        return "-"
    if s.get("lo") is None:
        return f"{s['mean']:.{nd}f} (one value: no interval)"
    return f"{s['mean']:.{nd}f} [{s['lo']:.{nd}f}, {s['hi']:.{nd}f}]"


def fmt_bootstrap(bd: list[float] | tuple[float, float] | None) -> str:
    """The seed-bootstrap interval of a difference, or why there is none."""
    if not bd:
        return "-"
    if bd[0] == bd[1]:
        return "- (no spread across seeds)"
    return f"[{bd[0]:+.2f}, {bd[1]:+.2f}]"


def render_checks(checks: list[dict[str, Any]]) -> list[str]:
    """The report's "Checks" section (markdown lines) for :func:`compare_conditions`' output."""
    lines = ["", "## Checks", "",
             "Verdicts use the conservative difference interval `[a.lo - b.hi, a.hi - b.lo]`; "
             "the seed-bootstrap interval of the difference is shown beside it.", "",
             "| claim | metric | difference [conservative interval] | seed-bootstrap interval | "
             "verdict |", "| --- | --- | --- | --- | --- |"]
    for c in checks:
        claim = f"{c['condition']} {c['relation']} {c['versus']}"
        if c["verdict"] == "not run":
            lines.append(f"| {claim} | {c.get('metric', '-')} | - | - | not run |")
            continue
        why = f" ({c['why']})" if c.get("why") else ""
        bd = c.get("bootstrap_diff")
        bds = fmt_bootstrap(bd)
        lines.append(f"| {claim} | {c.get('metric', '-')} | {c['diff']:+.2f} "
                     f"[{c['diff_lo']:+.2f}, {c['diff_hi']:+.2f}] | {bds} | "
                     f"**{c['verdict']}**{why} |")
    return lines


# ----------------------------------------------------------------------------- CLI

def add_common_arguments(sub: Any, exp: Experiment) -> argparse.ArgumentParser:
    """``train``, ``report``, ``collect`` and ``list`` subcommands (returns ``train``'s
    parser, for extra options); ``eval`` is the experiment's own."""
    t = sub.add_parser("train", help="train (and evaluate) conditions x seeds")
    t.add_argument("--conditions", nargs="+", default=None)
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    t.add_argument("--set", nargs="*", default=[], help="extra key=value for every run")
    sub.add_parser("report", help=f"write {exp.out}/report.md from stored episodes")
    sub.add_parser("collect", help=f"copy finished runs' final checkpoints to {exp.checkpoints}/")
    sub.add_parser("list", help="conditions and predictions")
    return t


def add_eval_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``eval RUN [-n N]`` subcommand (returns its parser, for extra options)."""
    e = sub.add_parser("eval", help="evaluate one run's final checkpoint")
    e.add_argument("run")
    e.add_argument("-n", type=int, default=None)
    return e


def run_main(prog: str, doc: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
             cli: Callable[[argparse.Namespace], int], argv: list[str] | None) -> int:
    """``python -m mtsandbox.experiments.<name>``: parse ``argv`` and run ``cli``."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return cli(p.parse_args(argv))


def common_cli(exp: Experiment, spec: dict[str, Any], args: argparse.Namespace) -> int | None:
    """Run ``list``, ``train`` or ``collect``; None for the experiment's own subcommands."""
    if args.what == "list":
        w = max(len(n) for n in spec["conditions"]) + 1
        for name, c in spec["conditions"].items():
            print(f"{name:{w}s} {c['summary']}  ->  {c['prediction']}")
    elif args.what == "train":
        conds = args.conditions or list(spec["conditions"])
        if (err := check_conditions(spec, conds)) is not None:
            print(err, file=sys.stderr)
            return 2
        train_all(exp, spec, conds, args.seeds, args.set, base=getattr(args, "base", None))
    elif args.what == "collect":
        for run in sorted(exp.run_root.glob("*__seed*")):
            if (dst := collect_checkpoint(run, exp.checkpoints)) is not None:
                print(f"collected {dst}")
    else:
        return None
    return 0
