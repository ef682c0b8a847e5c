"""``mtsandbox figures [--check]``: the README's figures and docs/benchmarks.md, from results/.

Every figure the README and docs/benchmarks.md print is read here from the JSON/JSONL files the
benchmark commands wrote (results/bench/*.json, the committed checkpoint's eval.jsonl); nothing
is typed by hand. ``mtsandbox figures`` rewrites docs/benchmarks.md and the README's blocks
between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``; ``--check`` only compares and
exits 1 naming what is stale (the test suite runs it). A figure whose file is missing reads
"not measured" with the command that measures it.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mtsandbox.experiments.conditions import fmt_interval

ROOT = Path(__file__).resolve().parents[2]
TREEPUNCH_CKPT = "results/checkpoints/treepunch_shaped_ppo_seed0"
MB_VS_PPO = "results/model_based/mb_vs_ppo/compare.json"
MB_TARGET = "results/model_based/mb_32k/target.json"
DREAMER_VS_PPO = "results/model_based/dreamer_24k/compare_ppo.json"
DREAMER_TARGET = "results/model_based/dreamer_24k/target.json"
DREAMER_48K_TARGET = "results/model_based/dreamer_48k/target.json"
DREAMER_LR1E4_TARGET = "results/model_based/dreamer_lr1e4_48k/target.json"


class MBRuns(NamedTuple):
    """One model-based agent's stored runs and how the docs describe them."""

    vs_ppo: str | None
    """bench learning --compare against the PPO runs (None: these runs have none)."""
    target: str
    """bench learning --target."""
    config: str
    who: str
    vs_ppo_how: str
    target_how: str
    speed: str
    """Under what load its training speed was measured."""
    variant: str = ""
    """What its config overrides, as the README row names it (e.g. ``, actor_lr 1e-4``)."""


MB_RUNS = (
    MBRuns(MB_VS_PPO, MB_TARGET, "treepunch_mb_cpu", "the CEM planner",
           "`mtsandbox bench learning --config treepunch_mb_cpu --steps 16000 --eval-every "
           "4000 --eval-episodes 4 --no-eval-at-start --seed S` and the same with "
           "`--config treepunch_ppo_cpu`, seeds 0-2, then `mtsandbox bench learning "
           "--compare`.",
           "`mtsandbox bench learning --config treepunch_mb_cpu --steps 32000 --eval-every "
           "8000 --eval-episodes 4 --no-eval-at-start --no-random --seed S --set "
           "torch_threads=1 mb.train_ac=false`, seeds 0-2, then `mtsandbox bench learning "
           "--target`. The planner reads no actor or critic (`plan_critic: 0`), so their "
           "updates are skipped (`mb.train_ac=false`).",
           "3 seeds sharing 2 cores, with other jobs part of the time"),
    MBRuns(DREAMER_VS_PPO, DREAMER_TARGET, "treepunch_dreamer_cpu",
           "the imagination actor-critic",
           "The `treepunch_dreamer_cpu` runs of the target section below (seeds 0-4, "
           "8 evaluation episodes each) against the PPO runs above (seeds 0-2, 4 "
           "episodes each), `mtsandbox bench learning --compare` at the steps both "
           "evaluated.",
           "`mtsandbox bench learning --config treepunch_dreamer_cpu --steps 24000 "
           "--eval-every 4000 --eval-episodes 8 --no-eval-at-start --no-random --seed "
           "S`, seeds 0-4 (seeds, budget and evaluation registered before the runs), "
           "then `mtsandbox bench learning --target`. The agent acts with the actor "
           "trained on 15-step rollouts imagined in the world model (no search).",
           "one or two runs at a time on 2 cores, beside a world-model job most of the time"),
    MBRuns(None, DREAMER_48K_TARGET, "treepunch_dreamer_cpu",
           "the imagination actor-critic, registered 48k budget", "",
           "`mtsandbox bench learning --config treepunch_dreamer_cpu --steps 48000 "
           "--eval-every 8000 --eval-episodes 24 --no-eval-at-start --no-random --seed S`, "
           "seeds 7-14, registered before the runs (results/model_based/dreamer_48k/"
           "PROTOCOL.md) after the 24k runs above were inconclusive and a 2-seed 48k pilot "
           "(seeds 5-6, not pooled here) still rose after 24k; then `mtsandbox bench learning "
           "--target`.",
           "two runs at a time on 2 cores; an 8-minute world-model evaluation beside seeds "
           "11-12"),
    MBRuns(None, DREAMER_LR1E4_TARGET, "treepunch_dreamer_cpu",
           "the imagination actor-critic with actor_lr 1e-4, registered 48k budget", "",
           "`mtsandbox bench learning --config treepunch_dreamer_cpu --steps 48000 "
           "--eval-every 8000 --eval-episodes 24 --no-eval-at-start --no-random --seed S "
           "--set mb.actor_lr=0.0001`, seeds 17-24, registered before the runs "
           "(results/model_based/dreamer_lr1e4_48k/PROTOCOL.md) after the default 48k runs "
           "above were inconclusive with an unstable actor and a 2-seed pilot at actor_lr 1e-4 "
           "(seeds 15-16, not pooled here) rose monotonically; then `mtsandbox bench learning "
           "--target ... --level 0.9833`, a Bonferroni level for the third registered look at "
           "the 5-trunk claim.",
           "two runs at a time on 2 cores; beside seeds 17-20 world-model fine-tunes, data "
           "collection and evaluations on one more core for about 75 minutes, beside seeds "
           "21-24 the test suite, a clean-clone CI run and a 2-minute world-model evaluation",
           ", actor_lr 1e-4"),
)
WM_BUTTON = "results/world_model/button_report.json"
WM_TRACKING = "results/world_model/tracking_report.json"
WM_TRACKING_PARTIAL = "results/world_model/tracking_look2_first40.json"
WM_TRACKING_LOOKS = ("results/world_model/tracking_look1.json", WM_TRACKING,
                     "results/world_model/copygate_tracking.json")
WM_OPENLOOP_CONFIRM = "results/world_model/openloop_confirm.json"
WM_COPYGATE_DEV = "results/world_model/copygate_dev.json"
WM_COPYGATE_CONFIRM = "results/world_model/copygate_confirm.json"
WM_COPYGATE_ABLATIONS = (
    ("the tracking model itself", "results/world_model/copygate_ablation_nogate.json"),
    ("the tracking model trained further as the gated one was",
     "results/world_model/copygate_ablation_nogate_ft.json"))


class Results:
    """Read-only view of a results/ folder; a missing or unreadable file is ``None``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def json(self, rel: str) -> Any:
        p = self.root / rel
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def jsonl(self, rel: str) -> list[dict[str, Any]] | None:
        p = self.root / rel
        try:
            return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            return None

    def bench_train(self) -> list[tuple[str, dict[str, Any]]]:
        """``(label, figures)`` of every results/bench/train_<label>.json, oldest first."""
        rows = []
        for p in sorted((self.root / "results/bench").glob("train_*.json")):
            d = self.json(str(p.relative_to(self.root)))
            if isinstance(d, dict) and "end_to_end_steps_per_s" in d:
                rows.append((p.stem[len("train_"):], d))
        return sorted(rows, key=lambda r: str(r[1].get("when", "")))


def _n(v: Any, fmt: str = ",.0f") -> str:
    if v is None:
        return "-"
    return format(v, fmt)


def _pm(s: dict[str, Any]) -> str:
    """``mean +- ci95`` of a :func:`mean_ci95` summary as ``+m [lo, hi]``."""
    m, h = s["mean"], s["ci95"]
    return f"{m:+.2f} [{m - h:+.2f}, {m + h:+.2f}]"


def _missing(cmd: str) -> str:
    return f"not measured (`{cmd}`)"


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _ci(summary: Any) -> str:
    if not isinstance(summary, dict):
        return "-"
    return f"{summary['mean']:.1f} ± {summary['ci95']:.1f} (n={summary['n']})"


# ------------------------------------------------------------------------------ README blocks

def readme_demo(r: Results) -> str:
    d = r.json("results/bench/demo.json")
    if not isinstance(d, dict):
        return ("The demo trains PPO on two real servers (its time is "
                + _missing("mtsandbox demo --figures results/bench/demo.json") + ")")
    return (f"The demo trains PPO for {d['steps']:,} env steps on {d['n_envs']} real servers "
            f"(training took {d['train_wall_s'] / 60:.1f} minutes and the whole demo "
            f"{d['total_wall_s'] / 60:.1f} on {d['cores']} cores, {d['when'][:10]}; it reached "
            f"{d['ppo_trunks']:.1f} trunks per episode vs {d['random_trunks']:.1f} for a random "
            f"policy over {d['episodes']} episodes each)")


def readme_table(r: Results) -> str:
    env, scaling = r.json("results/bench/env.json"), r.json("results/bench/scaling.json")
    train = r.json("results/bench/train_treepunch_ppo_cpu.json")
    svr = r.json("results/bench/sim_vs_real.json")
    evals = r.jsonl(f"{TREEPUNCH_CKPT}/eval.jsonl")
    rand = _get(r.json("results/bench/learning_throughput.json"), "random", "trunks_per_episode")
    rows = [("what", "figure", "from"), ("---", "---", "---")]
    rows.append(("env steps/s, 64x64 RGB, one env (random actions)",
                 _n(_get(env, "batched", "env_steps_per_s_64x64_rgb")) if env
                 else _missing("mtsandbox bench env"), "results/bench/env.json"))
    rows.append(("soft reset, median",
                 f"{_get(env, 'batched', 'soft_reset_ms_median'):.1f} ms" if env else "-",
                 "results/bench/env.json"))
    rows.append(("2 envs vs 1 (steps/s)",
                 f"{_get(scaling, 'scaling_vs_first', '2'):.2f}x" if scaling
                 else _missing("mtsandbox bench scaling"), "results/bench/scaling.json"))
    if train:
        rows.append((f"PPO training end to end, {train['n_envs']} envs (`treepunch_ppo_cpu`)",
                     f"{train['end_to_end_steps_per_s']:,.0f} env steps/s "
                     f"({100 * train['end_to_end_over_ceiling']:.0f}% of the parts' ceiling)",
                     "results/bench/train_treepunch_ppo_cpu.json"))
    else:
        rows.append(("PPO training end to end", _missing("mtsandbox bench train"),
                     "results/bench/train_treepunch_ppo_cpu.json"))
    if evals:
        last = evals[-1]
        rows.append((f"PPO on TreePunchShaped, seed 0, after {last['step'] // 1000}k steps: "
                     "trunks / episode (random policy: " + _ci(rand) + ")",
                     _ci(_get(last, "summary", "hidden_performance")),
                     f"{TREEPUNCH_CKPT}/eval.jsonl"))
    if svr:
        rows.append(("real client vs Python renderer, colour-class agreement per pixel",
                     f"{svr['agreement_colour_class_pct']:.1f}% ({svr['frames_compared']} frames)",
                     "results/bench/sim_vs_real.json"))
        rows.append(("real-client observation path, synced, 64x64",
                     f"{svr['client_steps_per_s']:,.0f} steps/s", "results/bench/sim_vs_real.json"))
    wm = r.json("results/world_model/report.json")
    ol = _get(wm, "open_loop") or {}
    if all(isinstance(ol.get(h), dict) and "gain" in ol[h] for h in ("1", "5", "15")):
        S = _get(wm, "config", "image_size")
        rows.append((f"world model vs copy-last-frame, held-out episodes, {S}x{S}: MSE cut at "
                     "1 / 5 / 15 steps",
                     " / ".join(f"{100 * ol[h]['gain']:.0f}%" for h in ("1", "5", "15")),
                     "results/world_model/report.json"))
        fr = _get(wm, "frames") or {}
        rows.append(("world model: dig-reward AUROC (one-step prediction) / reconstruction "
                     "trunk IoU",
                     f"{fr.get('reward_auroc_prior', float('nan')):.3f} / "
                     f"{fr.get('recon_trunk_iou', float('nan')):.2f}",
                     "results/world_model/report.json"))
        pr = _get(wm, "probe") or {}
        dv, dn = pr.get("diff_vs_baseline") or {}, pr.get("diff_vs_no_memory") or {}
        if pr.get("n_trials") and dv.get("ci95") is not None and dn.get("ci95") is not None:
            rows.append((f"world model state tracking: trunk IoU after turning {pr['k']} times "
                         "away and back (imagined), model / frame before turning back / no "
                         f"memory; {pr['n_trials']} trials, model's mask from its "
                         f"{pr.get('mask_source', 'rgb').replace('_', ' ')}",
                         f"{pr['iou_model']:.2f} / {pr['iou_baseline_before_turn_back']:.2f} / "
                         f"{pr['iou_no_memory']:.2f} (model - baseline {_pm(dv)}, model - no "
                         f"memory {_pm(dn)})", "results/world_model/report.json"))
    else:
        rows.append(("world model vs copy-last-frame", _missing("mtsandbox train-world-model "
                     "--report results/world_model/report.json"),
                     "results/world_model/report.json"))
    for run in MB_RUNS:
        rows.extend(_mb_rows(r, run))
    rows.extend(_tracking_rows(r))
    rows.extend(_button_probe_rows(r))
    off = r.json("results/offswitch/figures.json")
    conds = _get(off, "conditions") or {}
    if all(c in conds for c in ("T_pass", "C0_pass", "C2_pass_fit")):
        rows.append(("off switch: interference rate, should interfere (T_pass) / base rate "
                     "(C0_pass) / compensated at the fitted rate (C2_pass_fit); seeds "
                     + "/".join(str(len(conds[c]["seeds"])) for c in
                                ("T_pass", "C0_pass", "C2_pass_fit")),
                     " / ".join("{mean:.2f} [{lo:.2f}, {hi:.2f}]".format(**conds[c]["interference"])
                                for c in ("T_pass", "C0_pass", "C2_pass_fit")),
                     "results/offswitch/figures.json"))
    wh = _get(r.json("results/wireheading/figures.json"), "conditions") or {}
    curve = sorted((c["distance"], name) for name, c in wh.items()
                   if c.get("curve") == "aimed" and c.get("distance") is not None)
    if "AI_d2" in wh and curve:
        names = [n for _, n in curve] + ["AI_d2"]
        rows.append(("wireheading: share of episodes with >= 5 self-presses, aimed at the button "
                     "from " + " / ".join(f"{d:g}" for d, _ in curve) + " nodes ("
                     + " / ".join(n for _, n in curve) + ") / inert-button control (AI_d2); "
                     "seeds " + "/".join(str(len(wh[n]["seeds"])) for n in names),
                     " / ".join("{mean:.2f} [{lo:.2f}, {hi:.2f}]".format(**wh[n]["wirehead_rate"])
                                for n in names),
                     "results/wireheading/figures.json"))
    for exp, pairs in CHECK_ROWS.items():
        doc = r.json(f"results/{exp}/figures.json")
        for cond, other, metric, label in pairs:
            row = _check_row(doc, cond, other, metric, label)
            if row:
                rows.append((row[0], row[1], f"results/{exp}/figures.json"))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# README rows read from a condition report's checks: (condition, control, metric, what)
CHECK_ROWS: dict[str, list[tuple[str, str, str, str]]] = {
    "correction": [
        ("K", "K_placebo", "compliance",
         "correction: compliance after the pull (allowed / all trunk digs)"),
        ("K_placebo", "K", "forbidden_after",
         "correction: apple trunks dug per episode after the pull, placebo above the real lever"),
        ("K_informative", "K_informative_placebo", "compliance",
         "informative correction: compliance after the reveal"),
        ("K_resist", "K_resist_placebo", "lever_interference",
         "correction, should resist: episodes with lever interference before the pull"),
    ],
    "absent_supervisor": [
        ("A_aim", "A_aim_uninformative", "difference",
         "absent supervisor: shortcut rate absent minus present, within seed"),
    ],
}


def _check_row(doc: Any, cond: str, other: str, metric: str, label: str
               ) -> tuple[str, str] | None:
    """``what``/``figure`` of a README row for the check ``cond`` vs ``other`` on ``metric``
    of a condition report's figures.json; None until both conditions have data."""
    conds = _get(doc, "conditions") or {}
    check = next((c for c in _get(doc, "checks") or [] if c.get("condition") == cond
                  and c.get("versus") == other and c.get("metric") == metric
                  and c.get("verdict") != "not run"), None)
    if cond not in conds or other not in conds or check is None:
        return None
    a, b = conds[cond][metric], conds[other][metric]
    what = (f"{label}: {cond} / control {other}; seeds {len(conds[cond]['seeds'])}/"
            f"{len(conds[other]['seeds'])}")
    fig = (f"{fmt_interval(a)} / {fmt_interval(b)}; difference {check['diff']:+.2f} "
           f"[{check['diff_lo']:+.2f}, {check['diff_hi']:+.2f}]: {check['verdict']}")
    return what, fig


README_BLOCKS: dict[str, Callable[[Results], str]] = {"demo": readme_demo,
                                                      "table": readme_table}


def fill_blocks(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each ``<!-- figures:NAME -->...<!-- /figures:NAME -->`` body replaced."""
    for name, body in blocks.items():
        pat = re.compile(rf"(<!-- figures:{name} -->)(.*?)(<!-- /figures:{name} -->)", re.S)
        if not pat.search(text):
            raise ValueError(f"no <!-- figures:{name} --> block")
        sep = "\n" if "\n" in body else ""
        m = pat.search(text)
        assert m is not None
        text = text[:m.start()] + m.group(1) + sep + body + sep + m.group(3) + text[m.end():]
    return text


# --------------------------------------------------------------------------- benchmarks.md

def _bench_train_table(r: Results) -> list[str]:
    runs = r.bench_train()
    if not runs:
        return [_missing("mtsandbox bench train --label NAME")]
    items: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("config (env, envs, rollout)", lambda d: f"{d['config']['env_id'].split('/')[-1]}, "
         f"{d['n_envs']}, {d['config'].get('rollout', 'lockstep')}"),
        ("measured", lambda d: str(d.get("when", "-"))[:16]),
        ("env steps/s, one env alone", lambda d: _n(d["env_alone_steps_per_s"])),
        ("cores one env alone keeps busy (process + server)",
         lambda d: _n(_get(d, "env_cpu_s_per_step") and d["env_cpu_s_per_step"]
                      * d["env_alone_steps_per_s"], ".2f")),
        ("start-up (build + first reset)", lambda d: f"{d['startup_s']:.1f} s"),
        ("rollout steps/s", lambda d: _n(d["rollout_steps_per_s"])),
        ("rollout: learner waits for the envs, ms per vector step",
         lambda d: _n(d.get("rollout_env_wait_ms_per_step"), ".2f")),
        ("rollout: learner's own work (inference, buffer), ms per vector step",
         lambda d: _n(d.get("rollout_learner_ms_per_step"), ".2f")),
        ("of the learner's own work: inference / sending actions / buffer, callbacks, rest, ms",
         lambda d: " / ".join(f"{v:.2f}" for v in d["rollout_learner_split_ms_per_step"].values())
         if "rollout_learner_split_ms_per_step" in d else "-"),
        ("learner process CPU per env step during rollouts, ms",
         lambda d: _n(d.get("rollout_learner_cpu_ms_per_env_step"), ".2f")),
        ("CPU utilisation during rollouts", lambda d: _n(
            d.get("rollout_cpu_utilisation") and 100 * d["rollout_cpu_utilisation"], ".0f")
         + ("%" if d.get("rollout_cpu_utilisation") else "")),
        ("update, ms per sample", lambda d: f"{d['update_ms_per_sample']:.2f}"),
        ("an env step's time: waiting for envs / learner's inference + buffer / update",
         lambda d: " / ".join(f"{100 * v:.0f}%" for v in d["share_of_step_time"].values())
         if "share_of_step_time" in d else "-"),
        ("**end to end, steps/s**", lambda d: f"**{d['end_to_end_steps_per_s']:,.0f}**"),
        ("CPU utilisation while learning", lambda d: _n(
            d["cpu_utilisation"] and 100 * d["cpu_utilisation"], ".0f") + "%"),
        ("ceiling from the parts", lambda d: _n(d["ceiling_steps_per_s"])),
        ("CPU-bound ceiling", lambda d: _n(d.get("cpu_ceiling_steps_per_s"))),
        ("CPU-bound ceiling paying the learner's rollout CPU too (a perfectly overlapped rollout)",
         lambda d: _n(d.get("cpu_ceiling_with_learner_steps_per_s"))),
        ("**end to end / ceiling**", lambda d: f"**{100 * d['end_to_end_over_ceiling']:.0f}%**"),
    ]
    head = "| figure | " + " | ".join(f"`{lab}`" for lab, _ in runs) + " |"
    lines = [head, "| --- |" + " --- |" * len(runs)]
    for name, f in items:
        lines.append(f"| {name} | " + " | ".join(f(d) for _, d in runs) + " |")
    return lines


def _learning_checks(r: Results) -> list[str]:
    """One section per results/bench/learning_check/summary*.json (``bench learning
    --compare A B --json ...``): does a faster config or rollout learn the same?"""
    out: list[str] = []
    for path in sorted((r.root / "results/bench/learning_check").glob("summary*.json")):
        lc = r.json(str(path.relative_to(r.root)))
        if not isinstance(lc, dict):
            continue
        a, b = lc["a"], lc["b"]
        out += ["", "## Learning check: does a faster config learn the same? (100k steps)", "",
                "`mtsandbox bench learning --config treepunch_ppo_cpu --steps 100000 "
                "--n-envs N --set n_steps=M` per seed, then `mtsandbox bench learning --compare "
                "A B`: trunks per 500-step episode at the last evaluation (5 episodes), the "
                "seed as the unit, Welch 95% interval of the difference (scipy).", "",
                "| runs | trunks per seed | mean [95% t interval] | training env steps/s "
                "per seed (evaluations excluded) |", "| --- | --- | --- | --- |"]

        def sps(side: str, lc: dict[str, Any] = lc) -> str:
            v = [x for x in (_get(lc, "train_env_steps_per_s", side) or []) if x is not None]
            return (", ".join(f"{x:.0f}" for x in v) + f" (mean {sum(v) / len(v):.0f})"
                    if v else "-")

        out += [f"| {lc.get('label_a', 'A')} | {', '.join(f'{x:.1f}' for x in a['per_seed'])} | "
                f"{a['mean']:.1f} [{a['ci95'][0]:.1f}, {a['ci95'][1]:.1f}] | {sps('a')} |",
                f"| {lc.get('label_b', 'B')} | {', '.join(f'{x:.1f}' for x in b['per_seed'])} | "
                f"{b['mean']:.1f} [{b['ci95'][0]:.1f}, {b['ci95'][1]:.1f}] | {sps('b')} |",
                "", f"Difference B - A: {lc['diff_b_minus_a']:+.1f} "
                f"[{lc['diff_ci95'][0]:+.1f}, {lc['diff_ci95'][1]:+.1f}]."]
    return out


def _mb_rows(r: Results, run: MBRuns) -> list[tuple[str, str, str]]:
    """README rows of one model-based agent: against PPO at equal env steps, and the
    5-trunk target."""
    vs_ppo, target, cfg = run.vs_ppo, run.target, run.config
    rows: list[tuple[str, str, str]] = []
    crv = {row["step"]: row for row in (_get(r.json(vs_ppo), "curve") or [])} if vs_ppo else {}
    if vs_ppo and crv:
        last = crv[max(crv)]
        rows.append((f"model-based agent (`{cfg}`) vs PPO (`treepunch_ppo_cpu`) at "
                     f"{last['step'] // 1000}k env steps: trunks / episode, "
                     f"{len(last['b']['per_seed'])} / {len(last['a']['per_seed'])} seeds",
                     "{:.2f} [{:.2f}, {:.2f}] vs {:.2f} [{:.2f}, {:.2f}]".format(
                         last["b"]["mean"], *last["b"]["ci95"], last["a"]["mean"],
                         *last["a"]["ci95"])
                     + (" (difference {:+.2f} [{:+.2f}, {:+.2f}])".format(
                         last["diff_b_minus_a"], *last["diff_ci95"])
                        if last.get("diff_ci95") else ""), vs_ppo))
    tgt = r.json(target)
    fin = _get(tgt, "final") or {}
    if fin.get("ci95"):
        lo, hi = fin.get("ci", fin["ci95"])
        note = _level_note(float(tgt.get("level", 0.95)))
        rows.append((f"model-based agent reaches {tgt['target']:g} trunks / episode? "
                     f"(`{cfg}`{run.variant}, {len(fin['per_seed'])} seeds, "
                     f"{fin['step'] // 1000}k env steps)",
                     f"{fin['mean']:.2f} [{lo:.2f}, {hi:.2f}]{note}: "
                     f"{tgt['verdict']}", target))
    return rows


def _level_note(level: float, what: str = "interval") -> str:
    """`` (98.33% interval)`` where a verdict was decided at a level other than 95%."""
    return "" if abs(level - 0.95) < 1e-9 else f" ({100 * level:g}% {what})"


def _gain_at_level(d: dict[str, Any]) -> str:
    """A registered Brier gain with the interval that decided the verdict (``half_width``;
    the 95% one where a report predates it)."""
    hw = d.get("half_width", d["ci95"])
    return f"{d['mean']:+.4f} [{d['mean'] - hw:+.4f}, {d['mean'] + hw:+.4f}]"


def _tracking_rows(r: Results) -> list[tuple[str, str, str]]:
    """README rows of the world model that the registered state-tracking score judges (its
    open-loop, reward and reconstruction figures too: the issue asks them of one model)."""
    rep = r.json(WM_TRACKING)
    pr = _get(rep, "probe") or {}
    if "tracking_verdict" not in pr:
        return []
    ol, fr = rep.get("open_loop") or {}, rep.get("frames") or {}
    what = (f"world model with trunk map + open-loop loss ({rep.get('updates')} updates, "
            f"{rep.get('n_train_episodes')} episodes)")

    from mtsandbox.agents.wm_diagnostics import OPEN_LOOP_BAR  # torch: only when needed

    gains = pr["brier_gain_vs_baseline"], pr["brier_gain_vs_no_memory"], pr["brier_gain_vs_empty"]
    rows = [
        (f"{what}: MSE cut vs copy-last at 1 / 5 / 15 steps ({ol['1']['n_episodes']} held-out "
         f"episodes, {ol['1']['n']} windows), >= {100 * OPEN_LOOP_BAR:g}% at all three?; "
         "dig-reward AUROC; reconstruction trunk IoU",
         f"{_open_loop_gains(ol)}; {fr.get('reward_auroc_prior', float('nan')):.3f}; "
         f"{fr.get('recon_trunk_iou', float('nan')):.2f}", WM_TRACKING)]
    conf = r.json(WM_OPENLOOP_CONFIRM)
    if _get(conf, "open_loop", "1"):
        col, cfr = conf["open_loop"], conf.get("frames") or {}
        rows.append((f"the same model on fresh held-out episodes (registered confirmation, "
                     f"{col['1']['n_episodes']} episodes, {col['1']['n']} windows): MSE cut vs "
                     f"copy-last at 1 / 5 / 15 steps, >= {100 * OPEN_LOOP_BAR:g}% at all three?; "
                     "dig-reward AUROC; reconstruction trunk IoU",
                     f"{_open_loop_gains(col)}; {cfr.get('reward_auroc_prior', float('nan')):.3f}"
                     f"; {cfr.get('recon_trunk_iou', float('nan')):.2f}", WM_OPENLOOP_CONFIRM))
    for path, which in ((WM_COPYGATE_DEV, "the split its fine-tune held out (dev: some "
                                          "episodes were in the base model's training split; "
                                          "descriptive, optimistic)"),
                        (WM_COPYGATE_CONFIRM, "fresh held-out episodes (registered look, "
                                              "results/world_model/COPYGATE_CONFIRM.md)")):
        g = r.json(path)
        if not _get(g, "open_loop", "1"):
            continue
        gol, gfr = g["open_loop"], g.get("frames") or {}
        rows.append((f"the same model with a copy gate added and trained further "
                     f"({g.get('updates')} updates in all), on {which}, "
                     f"{gol['1']['n_episodes']} episodes, {gol['1']['n']} windows: MSE cut vs "
                     f"copy-last at 1 / 5 / 15 steps, >= {100 * OPEN_LOOP_BAR:g}% at all three?; "
                     "dig-reward AUROC; trunk IoU of the gated reconstruction",
                     f"{_open_loop_gains(gol)}; {gfr.get('reward_auroc_prior', float('nan')):.3f}"
                     f"; {gfr.get('recon_trunk_iou', float('nan')):.2f}", path))
    gt = _get(r.json(WM_TRACKING_LOOKS[-1]), "probe") or {}
    if "tracking_verdict" in gt:
        gg = [_gain_at_level(gt[f"brier_gain_vs_{c}"]) for c in ("baseline", "no_memory", "empty")]
        rows.append((f"the copy-gated model, state tracking, registered score (look 3, "
                     f"results/world_model/COPYGATE_TRACKING.md): Brier of the trunk map after "
                     f"turning {gt['k']} times away and back, model / frame before turning back / "
                     f"no memory / empty map; {gt['n_trials']} trials",
                     f"{gt['brier_model']:.4f} / {gt['brier_baseline']:.4f} / "
                     f"{gt['brier_no_memory']:.4f} / {gt['brier_empty']:.4f} (gains "
                     + ", ".join(gg) + f" at {100 * gt.get('tracking_level', 0.95):g}%): "
                     f"{gt['tracking_verdict']}", WM_TRACKING_LOOKS[-1]))
    for who, path in WM_COPYGATE_ABLATIONS:
        abl = r.json(path)
        if not _get(abl, "open_loop", "1"):
            continue
        aol = abl["open_loop"]
        rows.append((f"ablation, descriptive: no gate, {who} ({abl.get('updates')} updates), on "
                     f"the same fresh windows ({aol['1']['n_episodes']} episodes, "
                     f"{aol['1']['n']} windows): MSE cut vs copy-last at 1 / 5 / 15 steps",
                     _open_loop_gains(aol), path))
    return [
        *rows,
        (f"{what}, state tracking, registered score: Brier of the trunk map after turning "
         f"{pr['k']} times away and back (imagined, lower is better), model / frame before "
         f"turning back / no memory / empty map; {pr['n_trials']} trials",
         f"{pr['brier_model']:.4f} / {pr['brier_baseline']:.4f} / {pr['brier_no_memory']:.4f} / "
         f"{pr['brier_empty']:.4f} (gains "
         + ", ".join(_gain_at_level(g) for g in gains)
         + f" at {100 * pr.get('tracking_level', 0.95):g}%): {pr['tracking_verdict']}",
         WM_TRACKING),
        (f"{what}, state tracking by trunk IoU (p > 0.5), model / frame before turning back / "
         "no memory",
         f"{pr['iou_model']:.2f} / {pr['iou_baseline_before_turn_back']:.2f} / "
         f"{pr['iou_no_memory']:.2f} (model - baseline {_pm(pr['diff_vs_baseline'])})",
         WM_TRACKING),
    ]


def _open_loop_gains(ol: dict[str, Any]) -> str:
    """``g1 [lo, hi] / g5 [..] / g15 [..]: verdict`` of a report's open-loop gains, the verdict
    computed from the stored intervals against issue 17's bar."""
    from mtsandbox.agents.wm_diagnostics import open_loop_verdict

    def gain(g: dict[str, Any]) -> str:
        return ("{:.0f}% [{:.0f}, {:.0f}]".format(100 * g["gain"], *(100 * x for x in g["gain_ci"]))
                if g.get("gain_ci") else f"{100 * g['gain']:.0f}%")

    at = _level_note(float(ol["1"].get("gain_level", 0.95)), "intervals")
    return (" / ".join(gain(ol[h]) for h in ("1", "5", "15"))
            + f"{at}: {open_loop_verdict({h: ol[h] for h in ('1', '5', '15')})}")


def _tracking_looks(r: Results) -> list[str]:
    """docs/benchmarks.md: every look at the registered state-tracking score, in order."""
    looks = [(path, r.json(path)) for path in WM_TRACKING_LOOKS]
    looks = [(path, rep) for path, rep in looks
             if "tracking_verdict" in (_get(rep, "probe") or {})]
    if not looks:
        return []
    out = ["", "## World model state tracking: the registered score, look by look", "",
           "The state-tracking probe (`agents/wm_diagnostics.py`) gets a tree in view, turns "
           "left k times (observed), then imagines the k turns back and scores the model's "
           "trunk-map probabilities of the return frame with the Brier score (lower is better) "
           "against three predictions of the same frame: the frame before turning back, the "
           "no-memory ablation and an empty map. The score and its verdict rule were committed "
           "before the first look; the second look (the same model trained further, new trials, "
           "intervals at 97.5% for two looks) was registered before it ran"
           + (", and so was the third (the copy-gated model, results/world_model/"
              "COPYGATE_TRACKING.md: look 2's trials, 98.33% for three looks)"
              if len(looks) > 2 else "")
           + ". Gains are control - model with t-intervals over trials at the verdict's level.",
           "",
           "| look | model | updates | trials | level | Brier model | frame before | no memory | "
           "empty | gain vs frame before | gain vs no memory | gain vs empty | verdict |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, (path, rep) in enumerate(looks, 1):
        pr = rep["probe"]
        g = [_gain_at_level(pr[f"brier_gain_vs_{c}"]) for c in ("baseline", "no_memory", "empty")]
        out.append(f"| {i} | `{path}` | {rep.get('updates')} | {pr['n_trials']} | "
                   f"{100 * pr.get('tracking_level', 0.95):g}% | {pr['brier_model']:.4f} | "
                   f"{pr['brier_baseline']:.4f} | {pr['brier_no_memory']:.4f} | "
                   f"{pr['brier_empty']:.4f} | {' | '.join(g)} | {pr['tracking_verdict']} |")
    part = _get(r.json(WM_TRACKING_PARTIAL), "probe") or {}
    if "tracking_verdict" in part:
        out += ["", f"Look 2 was registered at 100 trials. A retry cap in the probe first cut it "
                f"to {part['n_trials']} trials ({part['tracking_verdict']} at "
                f"{100 * part['tracking_level']:g}%; `{WM_TRACKING_PARTIAL}`); the probe with "
                "the cap fixed reproduced those trials exactly and added the rest, as registered."]
    return out


def _button_probe_rows(r: Results) -> list[tuple[str, str, str]]:
    """README rows: linear probes of the reward button's state from a world model trained on
    RewardButton-v0 play: the GRU state (memory) against the frame's own embedding."""
    rep = r.json(WM_BUTTON)
    probes = {(p["concept"], p["layer"]): p for p in (_get(rep, "latent_probes") or [])}
    rows = []
    for concept, what in (("press_pending", "the overseer owes a press (press_pending)"),
                          ("reward_button_in_memory", "button out of view, seen within 8 "
                           "frames")):
        m, e = probes.get((concept, "wm_deter")), probes.get((concept, "wm_embed"))
        if m and e:
            rows.append((f"world model on RewardButton-v0 play ({rep.get('updates')} updates, "
                         f"{rep.get('n_train_episodes')} episodes), latent probe: {what}; "
                         "balanced accuracy from the GRU state / the frame's embedding / "
                         "shuffled labels (one model and split: descriptive, no interval)",
                         f"{m['balanced_accuracy']:.2f} / {e['balanced_accuracy']:.2f} / "
                         f"{m['control_balanced_accuracy']:.2f} ({m['n_test']} held-out rows)",
                         WM_BUTTON))
    return rows


def _mb_target(r: Results, run: MBRuns) -> list[str]:
    """A model-based agent's longer runs against the 5-trunk target (issue 17)."""
    path = run.target
    tgt = r.json(path)
    if not isinstance(tgt, dict) or not tgt.get("curve"):
        return []
    out = ["", f"## Model-based agent, {run.who} (`{run.config}`), to "
           f"{tgt['final']['step']:,} env steps: does it reach {tgt['target']:g} trunks per "
           "episode?", "",
           f"{run.target_how} Mean over seeds [{100 * float(tgt.get('level', 0.95)):g}% t "
           "interval hulled with the exact "
           "Poisson interval of the pooled episodes]; verdict *reached* when the lower end is at "
           f"or above the target, *not reached* when the upper end is below, else "
           f"*inconclusive*. From `{path}`.", "",
           "| env steps | trunks / episode | per seed |", "| --- | --- | --- |"]
    for row in tgt["curve"]:
        ci = row.get("ci", row["ci95"])
        out.append(f"| {row['step']:,} | {row['mean']:.2f} [{ci[0]:.2f}, "
                   f"{ci[1]:.2f}] | {', '.join(f'{x:.2f}' for x in row['per_seed'])} |")
    fin = tgt["final"]
    note = _level_note(float(tgt.get("level", 0.95)))
    at95 = ("" if not note else
            " The 95% interval, descriptive only: [{:.2f}, {:.2f}].".format(*fin["ci95"]))
    out += ["", f"Verdict at {fin['step']:,} steps: **{tgt['verdict']}**{note} "
            f"(mean {fin['mean']:.2f} {'>=' if tgt['mean_reaches_target'] else '<'} "
            f"{tgt['target']:g}).{at95} Training speed "
            + ", ".join(f"{x:.1f}" for x in tgt.get("train_env_steps_per_s") or [] if x)
            + " env steps/s per seed (" + run.speed + ")."]
    ref = _get(tgt, "reference", "curve") or []
    if ref:
        cis = [x.get("diff_ci95") for x in ref]
        n_seeds = len(ref[-1]["b"]["per_seed"])
        seen = (f"no difference detected (every interval holds 0; {n_seeds} seeds a side, "
                "so little power)" if all(c and c[0] <= 0 <= c[1] for c in cis)
                else "a difference")
        out += ["", "Against the 16k-step runs above (actor-critic trained, one rollout per "
                "candidate; their evaluations drew other episodes) at the steps both evaluated, "
                f"the check on what skipping the unused updates changed: {seen}; "
                + "; ".join(
                    "{:,}: {:.2f} vs {:.2f}, difference {:+.2f}{}".format(
                        x["step"], x["b"]["mean"], x["a"]["mean"], x["diff_b_minus_a"],
                        " [{:+.2f}, {:+.2f}]".format(*x["diff_ci95"])
                        if x.get("diff_ci95") else "") for x in ref) + "."]
    return out


def _mb_vs_ppo(r: Results, run: MBRuns) -> list[str]:
    """The sample-efficiency curve of a model-based agent against PPO (issue 17)."""
    path = run.vs_ppo
    if not path:
        return []
    cmp_ = r.json(path)
    if not isinstance(cmp_, dict) or not cmp_.get("curve"):
        return []
    out = ["", f"## Sample efficiency: model-based agent ({run.who}) vs PPO at equal env steps",
           "", f"{run.vs_ppo_how} Trunks per 500-step episode (hidden performance), the seed "
           "as the unit: mean over seeds [95% t interval hulled with the exact Poisson "
           "interval of the pooled episodes]; difference model-based - PPO with its Welch 95% "
           f"interval (scipy). From `{path}`.", "",
           "| env steps | model-based | per seed | PPO | per seed | difference |",
           "| --- | --- | --- | --- | --- | --- |"]
    for row in cmp_["curve"]:
        a, b = row["a"], row["b"]
        d = (" [{:+.2f}, {:+.2f}]".format(*row["diff_ci95"]) if row.get("diff_ci95") else "")
        out.append(f"| {row['step']:,} | {b['mean']:.2f} [{b['ci95'][0]:.2f}, "
                   f"{b['ci95'][1]:.2f}] | {', '.join(f'{x:.2f}' for x in b['per_seed'])} | "
                   f"{a['mean']:.2f} [{a['ci95'][0]:.2f}, {a['ci95'][1]:.2f}] | "
                   f"{', '.join(f'{x:.2f}' for x in a['per_seed'])} | "
                   f"{row['diff_b_minus_a']:+.2f}{d} |")
    return out


def benchmarks_md(r: Results) -> str:
    env, scaling = r.json("results/bench/env.json"), r.json("results/bench/scaling.json")
    out = ["# Benchmarks", "",
           "Measured on this project's machine kind: 2 CPU cores, 24 GiB, no GPU, software GL,",
           "Debian's Minetest 5.6.1. This file is generated by `mtsandbox figures` from the JSON",
           "files the benchmark commands write into `results/bench/` (do not edit it by hand).",
           "Re-run them on your machine rather than trusting these.", ""]
    out += ["## Lockstep bridge and environment (`mtsandbox bench env --steps 5000`)", ""]
    if env:
        b, s = env["batched"], env["sync_every_step"]
        out += ["| figure | batched (default) | sync_every_step |", "| --- | --- | --- |"]
        for key, name, fmt in (
                ("bare_bridge_roundtrips_per_s", "bare bridge round trips/s", ",.0f"),
                ("bridge_steps_per_s_no_render", "bridge steps/s, no rendering", ",.0f"),
                ("env_steps_per_s_64x64_rgb", "env steps/s, 64x64 RGB, random actions", ",.0f"),
                ("env_over_bare_bridge", "env / bare bridge", ".2f"),
                ("soft_reset_ms_median", "soft reset, median ms", ".1f"),
                ("soft_reset_ms_p90", "soft reset, p90 ms", ".1f"),
                ("wake_datagrams_per_env_step", "UDP wake datagrams per env step", ".3f")):
            out.append(f"| {name} | {_n(b.get(key), fmt)} | {_n(s.get(key), fmt)} |")
        out += ["", "*batched*: the mod serves lockstep messages inside one engine step for up to "
                "`yield_ms` before letting the engine run; *sync_every_step*: one engine step per "
                "env step (needed when a real client renders every step)."]
    else:
        out.append(_missing("mtsandbox bench env --json results/bench/env.json"))
    out += ["", "## Parallel scaling (`mtsandbox bench scaling --envs 1 2 --steps 4000`)", ""]
    if scaling:
        out += ["| envs | steps/s | scaling |", "| --- | --- | --- |"]
        for n, v in scaling["steps_per_s"].items():
            out.append(f"| {n} | {v:,.0f} | {scaling['scaling_vs_first'][n]:.2f}x |")
        out += ["", "One process and one server per env (as SB3's SubprocVecEnv runs them)."]
    else:
        out.append(_missing("mtsandbox bench scaling"))
    out += ["", "## PPO training end to end and its parts (`mtsandbox bench train --label NAME`)",
            "", "One column per results/bench/train_<label>.json, oldest first (`before` is the "
            "code before the throughput work of issue 15, on the same machine). The ceiling "
            "assumes the envs step on every core during rollouts, then the update runs; the "
            "learner's wait and its own work add up to the rollout time (in SB3's lockstep "
            "rollout they never overlap; with `rollout: overlap` the learner infers for one env "
            "group while the other steps, which shortens the wait). The CPU-bound ceiling "
            "paying the learner's rollout CPU too is what a perfectly overlapped rollout could "
            "reach on these cores.", ""]
    out += _bench_train_table(r)
    out += _learning_checks(r)
    for run in MB_RUNS:
        out += _mb_vs_ppo(r, run)
        out += _mb_target(r, run)
    out += _tracking_looks(r)
    out += ["", "## Learning (`mtsandbox train --config treepunch_ppo_cpu`, seed 0)", ""]
    evals = r.jsonl(f"{TREEPUNCH_CKPT}/eval.jsonl")
    rand = _get(r.json("results/bench/learning_throughput.json"), "random", "trunks_per_episode")
    if evals:
        out += ["| env steps | trunks / 500-step episode, mean ± 95% CI (episodes) |",
                "| --- | --- |", f"| random policy | {_ci(rand)} |"]
        out += [f"| {e['step'] // 1000}k | {_ci(_get(e, 'summary', 'hidden_performance'))} |"
                for e in evals]
        out += ["", f"The checkpoint is in `{TREEPUNCH_CKPT}` (one seed: these intervals are "
                "over episodes of one policy, not over training runs)."]
    demo = r.json("results/bench/demo.json")
    out += ["", "## The demo (`mtsandbox demo --figures results/bench/demo.json`)", ""]
    if isinstance(demo, dict):
        out += ["| figure | value |", "| --- | --- |",
                f"| PPO env steps, envs | {demo['steps']:,}, {demo['n_envs']} |",
                f"| training wall time | {demo['train_wall_s']:.0f} s |",
                f"| evaluation + probe report | "
                f"{demo['total_wall_s'] - demo['train_wall_s']:.0f} s |",
                f"| whole demo (set-up excluded) | {demo['total_wall_s']:.0f} s |",
                f"| trunks / episode, PPO vs random ({demo['episodes']} episodes each) | "
                f"{demo['ppo_trunks']:.1f} vs {demo['random_trunks']:.1f} |"]
    else:
        out.append(_missing("mtsandbox demo --figures results/bench/demo.json"))
    svr = r.json("results/bench/sim_vs_real.json")
    out += ["", "## Faithful observations (`mtsandbox bench paths --checkpoint "
            f"{TREEPUNCH_CKPT}`)", ""]
    if svr:
        out += ["| figure | value |", "| --- | --- |",
                f"| colour-class agreement per pixel, real client vs Python renderer "
                f"({svr['frames_compared']} frames) | {svr['agreement_colour_class_pct']:.1f}% "
                f"(worst frame {svr['agreement_colour_class_min_pct']:.1f}%) |",
                f"| mean absolute RGB difference | {svr['mean_abs_rgb_diff']:.1f} / 255 |",
                f"| synced steps/s, real client path, 64x64, PPO policy | "
                f"{svr['client_steps_per_s']:,.0f} |",
                f"| steps/s, Python path, same policy | {svr['python_steps_per_s']:,.0f} |",
                f"| PPO trunks per 300-step episode, Python path / client path "
                f"({len(svr['episodes']['python'])} episodes each) | "
                f"{svr['python_trunks_per_episode']:.1f} / "
                f"{svr['client_trunks_per_episode']:.1f} |",
                "", "![sim vs real](img/sim_vs_real.png)"]
    else:
        out.append(_missing("mtsandbox bench paths"))
    out += ["", "## Soak (`mtsandbox bench soak --json results/bench/soak_<name>.json`)", "",
            "| soak | env | resets | steps | steps/s | servers killed / survived | leaked fds |"
            " leaked processes | RSS growth, MB |", "| --- |" + " --- |" * 8]
    soaks = sorted((r.root / "results/bench").glob("soak_*.json"))
    for p in soaks:
        d = r.json(str(p.relative_to(r.root)))
        if not isinstance(d, dict):
            continue
        lp = d.get("leaked_processes") or {}
        n_leak = sum(len(v) if isinstance(v, list) else int(v) for v in lp.values())
        out.append(f"| {p.stem[5:]} | {d['env_id'].split('/')[-1]} | {d['resets']:,} | "
                   f"{d['steps']:,} | {d['steps_per_s']:.0f} | {d['kills']} / "
                   f"{d['kills_survived']} | {d['leaked_fds']} | {n_leak} | "
                   f"{d['rss_growth_mb']:+.1f} |")
    if not soaks:
        out.append(_missing("mtsandbox bench soak --json results/bench/soak.json"))
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------------------------- CLI

def render(root: Path = ROOT) -> dict[Path, str]:
    """What README.md and docs/benchmarks.md should read, from ``root``'s results/."""
    r = Results(root)
    readme = root / "README.md"
    blocks = {name: f(r) for name, f in README_BLOCKS.items()}
    return {readme: fill_blocks(readme.read_text(), blocks),
            root / "docs/benchmarks.md": benchmarks_md(r)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="only compare; exit 1 naming the stale files")
    parser.add_argument("--root", default=str(ROOT), help="project root (default: this checkout)")


def cli(args: argparse.Namespace) -> int:
    root = Path(args.root)
    try:
        want = render(root)
    except (OSError, ValueError, KeyError) as e:
        print(f"mtsandbox figures: {e}")
        return 2
    stale = [p for p, text in want.items() if not p.exists() or p.read_text() != text]
    if args.check:
        if stale:
            print("mtsandbox figures: stale (run `mtsandbox figures`): "
                  + ", ".join(str(p.relative_to(root)) for p in stale))
            return 1
        return 0
    for p in stale:
        p.write_text(want[p])
        print(f"wrote {p.relative_to(root)}")
    return 0
