"""Run the seed claims (experiments/claims.py) and write ``report.md`` + ``figures.json``.

    from mtsandbox.experiments.report import run_experiments
    results = run_experiments(["1", "4"], {"treepunch": ["runs/a"]}, out_dir="results/x",
                              command="mtsandbox experiment run ...")

Claims whose checkpoint is missing are listed as "not run" with the command that would run
them; no numbers are made up for them. ``train_missing=True`` trains the missing checkpoints
first from ``claims.yaml``'s ``train`` entries (plus ``train_overrides``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtsandbox.experiments.claims import load_claims, run_claim
from mtsandbox.experiments.runner import Context
from mtsandbox.experiments.verdicts import INCONCLUSIVE
from mtsandbox.agents.provenance import git_info



# ----------------------------------------------------------------------------- provenance

def git_commit() -> dict[str, Any]:
    g = git_info()
    return {"commit": g["git_commit"], "dirty": g["git_dirty"]}


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"host": platform.node(), "platform": platform.platform(),
                            "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


# ----------------------------------------------------------------------------- training

def train_missing(names: Sequence[str], spec_all: dict[str, Any], out_dir: Path,
                  overrides: Sequence[str] = (), log: Callable[[str], None] = print
                  ) -> dict[str, list[str]]:
    """Train each named checkpoint (every seed in claims.yaml) under ``out_dir/runs``."""
    from mtsandbox.agents.train import train
    from mtsandbox.agents.config import load_config

    out: dict[str, list[str]] = {}
    for name in names:
        ck = spec_all["checkpoints"][name]
        tr = ck["train"]
        for seed in ck.get("seeds", [0]):
            ov = [*tr.get("overrides", []), f"seed={seed}", f"run_dir={out_dir / 'runs'}",
                  f"run_name={name}__seed{seed}", "progress_bar=false", *overrides]
            log(f"training {name} seed {seed}: config {tr['config']} {' '.join(ov)}")
            cfg = load_config(tr["config"], overrides=list(ov))
            res = train(cfg)
            out.setdefault(name, []).append(str(res.run_dir))
    return out


# ----------------------------------------------------------------------------- running

def command_for(claim: str, spec_all: dict[str, Any], out: str) -> str:
    """The command that would run ``claim`` (placeholders for the checkpoint paths)."""
    names = spec_all["claims"][claim].get("checkpoints", [])
    cks = " ".join(f"--checkpoint {n}=runs/<{n} run>" for n in names)
    return f"mtsandbox experiment run {claim} {cks} --out {out}"


def train_command_for(name: str, spec_all: dict[str, Any]) -> str:
    tr = spec_all["checkpoints"][name]["train"]
    ov = " ".join(tr.get("overrides", []))
    return f"mtsandbox train --config {tr['config']} --set {ov + ' ' if ov else ''}seed=<S>"


def run_experiments(claims: Sequence[str], ckpts: dict[str, list[str]], out_dir: str | Path,
                    *, command: str = "", episodes: int | None = None,
                    max_steps: int | None = None, seed: int = 0, device: str = "cpu",
                    train: bool = False, train_overrides: Sequence[str] = (),
                    spec_path: str | Path | None = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``claims`` and write ``out_dir/report.md`` and ``out_dir/figures.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_all = load_claims(spec_path)
    unknown = [c for c in claims if c not in spec_all["claims"]]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; known: {sorted(spec_all['claims'])}")
    ckpts = {k: list(v) for k, v in ckpts.items()}
    if train:
        need = sorted({n for c in claims for n in spec_all["claims"][c].get("checkpoints", [])
                       if not ckpts.get(n)})
        for n, paths in train_missing(need, spec_all, out_dir, train_overrides, log).items():
            ckpts[n] = paths
    ctx = Context(out_dir=out_dir, episodes=episodes, max_steps=max_steps, seed=seed,
                  device=device, log=log)
    started = _dt.datetime.now().astimezone()
    results = []
    for c in claims:
        log(f"claim {c}: {spec_all['claims'][c].get('title', '')}")
        try:
            r = run_claim(c, ckpts, spec_all, ctx)
        except Exception as e:  # a broken claim must not hide the others; say what broke
            r = {"claim": c, "title": spec_all["claims"][c].get("title", ""),
                 "statement": " ".join(str(spec_all["claims"][c].get("statement", "")).split()),
                 "status": "error", "verdict": INCONCLUSIVE, "figures": {}, "samples": {},
                 "plots": [], "criteria": spec_all["claims"][c].get("criteria"),
                 "checkpoints": {n: ckpts.get(n, []) for n in
                                 spec_all["claims"][c].get("checkpoints", [])},
                 "notes": [f"error: {type(e).__name__}: {e}"],
                 "traceback": traceback.format_exc()}
        if r["status"] == "not run":
            r["command"] = command_for(c, spec_all, str(out_dir))
            r["train_commands"] = [train_command_for(n, spec_all) for n in r["missing"]]
        log(f"claim {c}: {r['verdict']}")
        results.append(r)
    doc = {
        "command": command, "date": started.isoformat(timespec="seconds"),
        "wall_s": (_dt.datetime.now().astimezone() - started).total_seconds(),
        "git": git_commit(), "machine": machine_info(),
        "budget": {"episodes": episodes, "max_steps": max_steps, "seed": seed},
        "checkpoints": ckpts, "claims": results,
    }
    (out_dir / "figures.json").write_text(json.dumps(doc, indent=2, default=_json_default))
    (out_dir / "report.md").write_text(render_markdown(doc, spec_all))
    return doc


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


# ----------------------------------------------------------------------------- markdown

def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—" if math.isnan(v) else str(v)
        return f"{v:.4g}"
    return str(v)


def _cell(v: Any) -> str:
    if isinstance(v, dict) and "mean" in v:
        s = _num(v["mean"])
        if v.get("ci95") is not None:
            s += f" ± {_num(v['ci95'])}"
        if v.get("n") is not None:
            s += f" (n={_num(v['n'])})"
        return s
    if isinstance(v, dict) and "diff" in v:
        return f"{_num(v['diff'])} [{_num(v.get('lo'))}, {_num(v.get('hi'))}]"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_num(x)}" for k, x in v.items()) or "—"
    if isinstance(v, (list, tuple)):
        return ", ".join(_num(x) for x in v) or "—"
    return _num(v).replace("|", "/")


def render_markdown(doc: dict[str, Any], spec_all: dict[str, Any]) -> str:
    L: list[str] = []
    g, m = doc["git"], doc["machine"]
    L += ["# Seed claims: results", ""]
    L += [f"- command: `{doc['command']}`" if doc["command"] else "- command: (programmatic)",
          f"- git commit: `{g.get('commit')}`" + (" (working tree dirty)" if g.get("dirty")
                                                  else ""),
          f"- machine: {m.get('host')}, {m.get('cpu', '?')}, {m.get('cpus')} CPUs, "
          f"GPU: {m.get('cuda') or 'none'}; {m.get('platform')}; python {m.get('python')}, "
          f"torch {m.get('torch', '?')}",
          f"- date: {doc['date']} (took {doc['wall_s']:.0f} s)",
          "- budget: " + ", ".join(f"{k} {_num(v) if v is not None else 'per claims.yaml'}"
                                   for k, v in doc["budget"].items()),
          "- checkpoints: " + ("; ".join(f"{k} = {', '.join(f'`{p}`' for p in v)}"
                                         for k, v in doc["checkpoints"].items() if v) or "none"),
          ""]
    L += ["## Verdicts", "", "| claim | title | verdict |", "| --- | --- | --- |"]
    for r in doc["claims"]:
        L.append(f"| {r['claim']} | {r['title']} | **{r['verdict']}** |")
    L += ["", "Verdicts follow only the criteria in `experiments/claims.yaml` (95% CIs; "
          "\"inconclusive at this budget\" where the CI is too wide or the samples too few).", ""]
    for r in doc["claims"]:
        L += [f"## Claim {r['claim']}: {r['title']}", "", f"> {r['statement']}", ""]
        if r["status"] == "not run":
            L += [f"**not run**: no checkpoint named {', '.join(r['missing'])} was given. "
                  "Run it with:", "", "```", r["command"], "```", "",
                  "(train the checkpoint first with: "
                  + "; ".join(f"`{c}`" for c in r["train_commands"])
                  + ", or add `--train`.)", ""]
            continue
        L += [f"**Verdict: {r['verdict']}**", ""]
        if r["status"] == "error":
            L += ["The claim's code failed; no figures.", ""]
        ck = "; ".join(f"{k}: {', '.join(f'`{p}`' for p in v) or 'none'}"
                       for k, v in r.get("checkpoints", {}).items())
        L += [f"Checkpoints: {ck}", ""]
        if r["figures"]:
            L += ["| figure | value (mean ± 95% CI half-width (n)) |", "| --- | --- |"]
            for k, v in r["figures"].items():
                L.append(f"| {k} | {_cell(v)} |")
            L.append("")
        for p in r.get("plots", []):
            L += [f"![claim {r['claim']}]({p})", ""]
        crit = r.get("criteria") or {}
        L += ["Criteria: `" + json.dumps(crit, default=str) + "`", ""]
        for d in r.get("criteria_details", []):
            L.append(f"- {d['criterion']}: **{d['verdict']}** ({d['why']})")
        for n in r.get("notes", []):
            L.append(f"- note: {n}")
        L.append("")
    L += ["## How this scales on a GPU", "",
          "Budgets here fit a 2-core CPU machine; what each claim needs "
          "(from `experiments/claims.yaml`):", ""]
    L += ["| claim | budget here (eval) | GPU-scale budget |", "| --- | --- | --- |"]
    for c, s in spec_all["claims"].items():
        ev = s.get("eval") or {}
        L.append(f"| {c} | {ev.get('episodes', '?')} episodes x {ev.get('max_steps', '?')} "
                 f"steps | {s.get('gpu', '—')} |")
    L += ["", "| checkpoint | trained here with | GPU-scale training |", "| --- | --- | --- |"]
    for n, s in spec_all["checkpoints"].items():
        t = s["train"]
        L.append(f"| {n} | `{t['config']}` {' '.join(t.get('overrides', []))} seeds "
                 f"{s.get('seeds', [0])} | {s.get('gpu', '—')} |")
    L += ["", "On a GPU, install a CUDA build of torch into `.venv`; training picks CUDA "
          "(`device: auto`) and the renderer's batched torch path. The env servers stay on the "
          "CPU, so the number of CPU cores bounds env throughput: use `n_envs` about the core "
          "count.", ""]
    return "\n".join(L)
