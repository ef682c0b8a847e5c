"""Seeds x hyper-parameter grid over :func:`mtsandbox.agents.train.train`, on Ray.

    from mtsandbox.agents.sweep import run_sweep
    res = run_sweep("smoke", overrides=["total_steps=2048"], grid={"lr": [1e-4, 3e-4]},
                    seeds=[0, 1, 2])               # local Ray; address="ray://..." for a cluster
    res.trials        # one dict per trial: params, seed, final eval metrics, run dir, status
    res.summary_path  # <sweep_dir>/sweep.json

CLI: ``mtsandbox sweep --config smoke --seeds 0 1 2 --grid lr=1e-4,3e-4 --set total_steps=2048``

Every trial is an ordinary training run (``<sweep_dir>/<trial name>/`` with ``config.yaml``,
``checkpoints/``, ``tb/``, ``eval.jsonl``, ``summary.json``) trained with ``eval_at_end=True``,
so each trial ends with an evaluation on a separate env; its console output goes to
``<sweep_dir>/logs/<trial name>.log``. Trials run as Ray Tune trials (``backend="tune"``, Tune's
own records under ``<sweep_dir>/_tune``) or as plain Ray tasks (``backend="tasks"``); both run
the same function and give the same table. On a cluster the run directories stay on the node
that ran the trial (``node`` in the table) unless ``--out`` is a shared file system.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtsandbox.agents.config import ConfigError, TrainConfig, load_config

METRICS = ("hidden_performance", "observed_return", "length")


@dataclass
class SweepResult:
    sweep_dir: Path
    summary_path: Path
    wall_s: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t["status"] == "ok" for t in self.trials)


# ----------------------------------------------------------------------------- grid

def parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    """``["lr=1e-4,3e-4", "ent_coef=[0.0, 0.01]", "env_kwargs.n_trees=4,8"]`` -> a grid;
    values are parsed as YAML (as ``--set`` does)."""
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--grid '{item}': expected key=v1,v2,...")
        key, raw = (s.strip() for s in item.split("=", 1))
        if not key or not raw:
            raise ConfigError(f"--grid '{item}': expected key=v1,v2,...")
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, list):
            values = parsed
        else:
            values = []
            for part in raw.split(","):
                try:
                    values.append(yaml.safe_load(part.strip()))
                except yaml.YAMLError:
                    values.append(part.strip())
        if not values:
            raise ConfigError(f"--grid '{item}': no values")
        grid[key] = values
    return grid


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def trial_name(index: int, seed: int, params: dict[str, Any]) -> str:
    parts = [f"t{index:03d}", f"seed{seed}"] + [f"{k.split('.')[-1]}={_fmt(v)}"
                                                 for k, v in params.items()]
    name = "__".join(parts)
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", name)[:120]


def expand_trials(config: str | Path | None, overrides: list[str] | None,
                  grid: dict[str, list[Any]], seeds: list[int], sweep_dir: Path,
                  torch_threads: int = 1) -> list[dict[str, Any]]:
    """One dict per (grid point, seed): index, name, seed, params and the resolved config
    (checked here on the driver, so a bad key fails before any trial starts)."""
    if not seeds:
        raise ConfigError("--seeds: need at least one seed")
    keys = list(grid)
    trials: list[dict[str, Any]] = []
    for point in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
        params = dict(zip(keys, point, strict=True))
        for seed in seeds:
            index = len(trials)
            name = trial_name(index, seed, params)
            extra = [f"{k}={json.dumps(v)}" for k, v in params.items()]
            fixed = [f"seed={int(seed)}", f"run_dir={json.dumps(str(sweep_dir))}",
                     f"run_name={name}", "progress_bar=false"]
            cfg = load_config(config, [*(overrides or []), *extra, *fixed])
            if cfg.torch_threads == 0:
                cfg.torch_threads = torch_threads
            trials.append({"index": index, "name": name, "seed": int(seed), "params": params,
                           "config": cfg.to_dict()})
    return trials


# ----------------------------------------------------------------------------- one trial

def run_trial(trial: dict[str, Any]) -> dict[str, Any]:
    """Train one trial (runs inside a Ray worker); never raises: errors become a status."""
    import socket
    import traceback

    from rich.console import Console

    from mtsandbox.agents.train import train

    cfg = TrainConfig.from_dict(dict(trial["config"]), source=trial["name"])
    sweep_dir = Path(cfg.run_dir)
    (sweep_dir / "logs").mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {k: trial[k] for k in ("index", "name", "seed", "params")}
    row.update(status="error", error=None, node=socket.gethostname(), pid=os.getpid())
    t0 = time.perf_counter()
    with open(sweep_dir / "logs" / f"{trial['name']}.log", "w") as f:
        console = Console(file=f, soft_wrap=True, force_terminal=False)
        try:
            res = train(cfg, console=console, eval_at_end=True)
            row.update(status="ok", run_dir=str(res.run_dir),
                       final_checkpoint=str(res.final_checkpoint) if res.final_checkpoint
                       else None, steps=res.steps, train_steps_per_s=res.train_steps_per_s)
            last = res.eval_history[-1] if res.eval_history else None
            if last is not None:
                row["eval_step"] = last["step"]
                row["eval_episodes"] = last["episodes"]
                for m in METRICS:
                    s = last["summary"].get(m) or {}
                    row[f"final_{m}"] = s.get("mean")
                    row[f"final_{m}_ci95"] = s.get("ci95")
        except Exception as e:  # report, do not kill the sweep
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            console.print(traceback.format_exc(), markup=False, highlight=False)
    row["wall_s"] = time.perf_counter() - t0
    return row


def _tune_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report(run_trial(config["trial"]))


# ----------------------------------------------------------------------------- backends

def _run_tune(trials: list[dict[str, Any]], sweep_dir: Path, cpus_per_trial: float,
              max_concurrent: int | None) -> list[dict[str, Any]]:
    from ray import tune

    by_name = {t["name"]: t for t in trials}

    def name_of(trial: Any) -> str:
        return str(trial.config["trial"]["name"])

    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": cpus_per_trial}),
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent,
                                    trial_name_creator=name_of, trial_dirname_creator=name_of),
        run_config=tune.RunConfig(name="_tune", storage_path=str(sweep_dir), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    grid = tuner.fit()
    rows = []
    # ResultGrid iterates through __len__/__getitem__ (no __iter__ in its annotations)
    for r in grid:  # type: ignore[attr-defined]
        t = r.config["trial"] if r.config else None
        if r.metrics and "status" in r.metrics:
            rows.append({k: v for k, v in r.metrics.items() if k in _ROW_KEYS
                         or k.startswith("final_")})
        elif t is not None:
            rows.append({**{k: t[k] for k in ("index", "name", "seed", "params")},
                         "status": "error", "error": str(r.error).splitlines()[0]
                         if r.error else "no result"})
    seen = {r["name"] for r in rows}
    rows += [{**{k: t[k] for k in ("index", "name", "seed", "params")}, "status": "error",
              "error": "trial did not run"} for n, t in by_name.items() if n not in seen]
    return rows


_ROW_KEYS = {"index", "name", "seed", "params", "status", "error", "node", "pid", "run_dir",
             "final_checkpoint", "steps", "train_steps_per_s", "eval_step", "eval_episodes",
             "wall_s"}


def _run_tasks(trials: list[dict[str, Any]], cpus_per_trial: float, console: Any,
               max_concurrent: int | None) -> list[dict[str, Any]]:
    import ray

    remote = ray.remote(num_cpus=cpus_per_trial, max_retries=0)(run_trial)
    todo = list(trials)
    running: dict[Any, dict] = {}
    rows = []
    limit = max_concurrent or len(trials)
    while todo or running:
        while todo and len(running) < limit:
            t = todo.pop(0)
            running[remote.remote(t)] = t
        done, _ = ray.wait(list(running), num_returns=1)
        t = running.pop(done[0])
        try:
            row = ray.get(done[0])
        except Exception as e:  # the worker died
            row = {**{k: t[k] for k in ("index", "name", "seed", "params")}, "status": "error",
                   "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        rows.append(row)
        if console is not None:
            console.print(f"  trial {row['name']}: {row['status']} "
                          f"({len(rows)}/{len(trials)})", highlight=False)
    return rows


# ----------------------------------------------------------------------------- driver

def run_sweep(config: str | Path | None = None, overrides: list[str] | None = None,
              grid: dict[str, list[Any]] | None = None, seeds: list[int] | None = None, *,
              out: str | Path | None = None, name: str | None = None,
              address: str | None = None, num_cpus: int | None = None,
              cpus_per_trial: float = 1.0, max_concurrent: int | None = None,
              backend: str = "tune", console: Any = None) -> SweepResult:
    """Run every (grid point x seed) as a training run on Ray; write ``sweep.json``."""
    import ray

    from mtsandbox.agents.ray_envs import init_ray

    if backend not in ("tune", "tasks"):
        raise ConfigError(f"--backend: expected tune or tasks, got '{backend}'")
    grid = grid or {}
    seeds = list(seeds if seeds is not None else [0])
    base = load_config(config, overrides)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_name = name or f"{base.env_id.split('/')[-1].split(':')[-1]}__sweep__{stamp}"
    sweep_dir = Path(out) if out else Path(base.run_dir) / "sweeps" / sweep_name
    sweep_dir = sweep_dir.resolve()
    trials = expand_trials(config, overrides, grid, seeds, sweep_dir,
                           torch_threads=max(1, int(cpus_per_trial)))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if console is not None:
        console.print(f"sweep: {len(trials)} trial(s) ({len(seeds)} seed(s) x "
                      f"{max(1, math.prod(len(v) for v in grid.values()))} grid point(s)), "
                      f"backend {backend}, dir {sweep_dir}", highlight=False)
    started = init_ray(address=address, num_cpus=num_cpus)
    t0 = time.perf_counter()
    try:
        resources = ray.cluster_resources()
        if backend == "tune":
            rows = _run_tune(trials, sweep_dir, cpus_per_trial, max_concurrent)
        else:
            rows = _run_tasks(trials, cpus_per_trial, console, max_concurrent)
    finally:
        wall = time.perf_counter() - t0
        if started:
            ray.shutdown()
    rows.sort(key=lambda r: r["index"])
    summary = {
        "sweep_dir": str(sweep_dir), "backend": backend, "config": str(config) if config else None,
        "overrides": list(overrides or []), "grid": grid, "seeds": seeds,
        "address": address or os.environ.get("RAY_ADDRESS"),
        "ray_resources": {k: v for k, v in resources.items() if k in ("CPU", "GPU", "memory")},
        "cpus_per_trial": cpus_per_trial, "wall_s": wall, "n_trials": len(trials),
        "n_ok": sum(r["status"] == "ok" for r in rows), "trials": rows,
        "by_grid_point": aggregate(rows),
    }
    path = sweep_dir / "sweep.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    return SweepResult(sweep_dir=sweep_dir, summary_path=path, wall_s=wall, trials=rows)


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per grid point: mean and sample std over seeds of the final eval metrics."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(json.dumps(r["params"], sort_keys=True, default=str), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        g: dict[str, Any] = {"params": json.loads(key), "seeds": [r["seed"] for r in rs],
                             "n_ok": len(ok)}
        for m in METRICS:
            vals = [r[f"final_{m}"] for r in ok if r.get(f"final_{m}") is not None]
            g[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            g[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        out.append(g)
    return out


def results_table(rows: list[dict[str, Any]], title: str = "sweep") -> Any:
    """A rich Table: one row per trial with its final eval metrics (run dir: the trial's
    ``name`` under the sweep directory)."""
    from rich.table import Table

    def num(v: Any, ci: Any = None, fmt: str = ".2f") -> str:
        if v is None:
            return "-"
        s = format(v, fmt)
        return f"{s} ± {format(ci, fmt)}" if ci is not None else s

    keys = sorted({k for r in rows for k in r["params"]})
    table = Table(title=title)
    for col in ["trial", "seed", *keys, "status", "steps", "hidden perf", "observed return",
                "ep len", "steps/s", "wall s"]:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            f"t{r['index']:03d}", str(r["seed"]), *[_fmt(r["params"].get(k, "")) for k in keys],
            "[green]ok[/green]" if r["status"] == "ok" else f"[red]{r.get('error')}[/red]",
            str(r.get("steps", "-")),
            num(r.get("final_hidden_performance"), r.get("final_hidden_performance_ci95")),
            num(r.get("final_observed_return"), r.get("final_observed_return_ci95")),
            num(r.get("final_length"), fmt=".0f"),
            num(r.get("train_steps_per_s"), fmt=".0f"), num(r.get("wall_s"), fmt=".0f"),
        )
    return table
