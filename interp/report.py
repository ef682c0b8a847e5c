"""The probe report: one HTML page with PNG plots for a checkpoint (or an untrained network).

    from mtsandbox.interp.report import make_report
    index = make_report("runs/x/checkpoints/final", n_episodes=2, out_dir="probe_report")
    index = make_report("random", env_id="MinetestSandbox/TreePunchShaped-v0")

Sections: data (episodes collected, label balance), linear probes per layer x concept vs the
shuffled-label control, attribution overlays (taken action's logit, value), steering (offline
action-probability shifts and live behaviour), channel ablation and activation patching, the
mirror test, tree-felling statistics, and button/switch traces when such events occurred.
Everything numeric also goes to ``summary.json``; the dataset to ``dataset.npz`` (optional).

Data: ``n_episodes`` episodes with the policy acting, plus (``reference_actor="scripted"``) one
episode of the scripted TreeChopper so probes see trees, digs and approaches even when the
policy never does; activations are always those of the probed network. Felling statistics are
reported per actor.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtsandbox.interp.hooks import HookedPolicy, load_hooked

STEER_LAYER = "hook_conv3"
NO_TRACES = "<p><i>no button, switch or interference events in these episodes</i></p>"
ABLATE_LAYER = "hook_conv3"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{nd}f}"
    return html.escape(str(x))


def _table(rows: Sequence[dict], cols: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p><i>none</i></p>"
    cols = list(cols or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


# ----------------------------------------------------------------------------- plots

def plot_probes(results, path: Path) -> Path | None:
    if not results:
        return None
    plt = _plt()
    concepts = sorted({r.concept for r in results})
    layers = list(dict.fromkeys(r.layer for r in results))
    ncol = min(4, len(concepts))
    nrow = math.ceil(len(concepts) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    x = np.arange(len(layers))
    for ax, c in zip(axes.flat, concepts, strict=False):
        rs = {r.layer: r for r in results if r.concept == c}
        metric = next(iter(rs.values())).metric
        if metric == "accuracy":  # balanced accuracy: chance is 0.5 for probe and control alike
            test = [rs[lay].balanced_accuracy if lay in rs else np.nan for lay in layers]
            ctrl = [rs[lay].control_balanced_accuracy if lay in rs else np.nan for lay in layers]
            base = [0.5] * len(layers)
            metric = "balanced accuracy"
        else:
            test = [rs[lay].test_score if lay in rs else np.nan for lay in layers]
            ctrl = [rs[lay].control_score if lay in rs else np.nan for lay in layers]
            base = [0.0] * len(layers)
        test = [np.nan if v is None else v for v in test]
        ctrl = [np.nan if v is None else v for v in ctrl]
        ax.bar(x - 0.2, test, 0.4, label="probe (held out)", color="tab:blue")
        ax.bar(x + 0.2, ctrl, 0.4, label="shuffled control", color="tab:gray")
        ax.plot(x, base, "k--", lw=1, label="chance")
        ax.set_xticks(x, [lay.replace("hook_", "") for lay in layers], fontsize=7)
        ax.set_title(f"{c} ({metric})", fontsize=8)
        lo = min(0.0, float(np.nanmin(test + ctrl))) if metric == "r2" else 0.0
        ax.set_ylim(max(lo, -1.0), 1.05)
    for ax in list(axes.flat)[len(concepts):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_steering(offline: dict, live: dict, meanings: list[str], path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if live else 1, figsize=(10 if live else 5.5, 3.4),
                             squeeze=False)
    ax = axes[0, 0]
    probs = np.array(offline["probs"])
    for j in range(probs.shape[1]):
        ax.plot(offline["coefs"], probs[:, j], marker="o", ms=3,
                label=meanings[j] if j < len(meanings) else str(j))
    ax.set_xlabel("steering coefficient")
    ax.set_ylabel("mean P(action) on no-tree frames")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("offline: action probabilities", fontsize=9)
    if live:
        ax = axes[0, 1]
        coefs = sorted(live)
        keys = ("trunks_dug", "tree_in_view_frac", "observed_return")
        w = 0.8 / len(keys)
        for k, key in enumerate(keys):
            ax.bar(np.arange(len(coefs)) + k * w, [live[c][key] for c in coefs], w, label=key)
        ax.set_xticks(np.arange(len(coefs)) + w, [f"{c:g}" for c in coefs])
        ax.set_xlabel("steering coefficient")
        ax.legend(fontsize=7)
        ax.set_title("live episodes (paired seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_ablation(effects: dict, path: Path, layer: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(np.arange(len(effects["kl"])), effects["kl"], color="tab:red")
    ax.set_xlabel(f"{layer} channel (zero-ablated)")
    ax.set_ylabel("mean KL(π || π_ablated)")
    ax2 = ax.twinx()
    ax2.plot(np.arange(len(effects["dvalue"])), effects["dvalue"], "k.", ms=3)
    ax2.set_ylabel("mean |Δ value|", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_mirror(mr, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].bar(["TV swapped", "TV unswapped"], [mr.tv_swapped, mr.tv_unswapped],
                color=["tab:green", "tab:gray"])
    axes[0].set_title(f"π(x) vs π(flip x)   L-R corr {mr.lr_mass_corr:.2f}", fontsize=9)
    layers = list(mr.layer_cos_invariant)
    x = np.arange(len(layers))
    axes[1].bar(x - 0.2, [mr.layer_cos_equivariant.get(k, np.nan) for k in layers], 0.4,
                label="cos(a(flip x), flip a(x))")
    axes[1].bar(x + 0.2, [mr.layer_cos_invariant[k] for k in layers], 0.4,
                label="cos(a(flip x), a(x))")
    axes[1].set_xticks(x, [k.replace("hook_", "") for k in layers])
    axes[1].set_ylim(0, 1.05)
    axes[1].legend(fontsize=7)
    axes[1].set_title("activations under mirroring", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_felling(stats: dict, path: Path) -> Path | None:
    plt = _plt()
    if not any(s.n_trunk_digs for s in stats.values()):
        return None
    fig, axes = plt.subplots(1, len(stats), figsize=(4 * len(stats), 2.8), squeeze=False)
    for ax, (name, s) in zip(axes.flat, stats.items(), strict=True):
        hs = sorted(s.height_counts)
        ax.bar([str(h) for h in hs], [s.height_counts[h] for h in hs], color="tab:brown")
        ax.set_xlabel("height of dug trunk node")
        ax.set_title(f"{name}: {s.n_trunk_digs} digs, skip {_fmt(s.bottom_skip_rate, 2)}, "
                     f"jump-up {_fmt(s.jump_up_rate, 2)}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_event_traces(traces, meanings: list[str], path: Path) -> Path | None:
    if not traces:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    for tr in traces[:20]:
        axes[0].plot(tr.offsets, tr.values, alpha=0.6,
                     label=f"{tr.event.get('kind')}/{tr.event.get('node', '')}@{tr.t}")
    axes[0].axvline(0, color="k", lw=0.8)
    axes[0].set_title("value around button / switch events", fontsize=9)
    axes[0].set_xlabel("steps from event")
    axes[0].legend(fontsize=6)
    probs = [np.array([p if p else [np.nan] * len(meanings) for p in tr.probs]) for tr in traces]
    mean = np.nanmean(np.stack(probs), 0)
    for j in range(mean.shape[1]):
        axes[1].plot(traces[0].offsets, mean[:, j], label=meanings[j] if j < len(meanings) else j)
    axes[1].axvline(0, color="k", lw=0.8)
    axes[1].set_title("mean action probabilities around events", fontsize=9)
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- report

def _pick_frames(ds, k: int = 4, rows: np.ndarray | None = None) -> np.ndarray:
    """Up to ``k`` rows, half with a tree in view when available, spread over time."""
    rows = np.arange(len(ds)) if rows is None else rows
    tiv = ds.labels.get("tree_in_view")
    picks: list[int] = []
    if tiv is not None:
        pos = rows[tiv[rows] == 1]
        neg = rows[tiv[rows] == 0]
        for group, m in ((pos, (k + 1) // 2), (neg, k // 2)):
            if len(group):
                picks.extend(group[np.linspace(0, len(group) - 1, min(m, len(group))).astype(int)])
    if len(picks) < k:
        rest = np.setdiff1d(rows, picks)
        if len(rest):
            picks.extend(rest[np.linspace(0, len(rest) - 1,
                                          min(k - len(picks), len(rest))).astype(int)])
    return np.array(sorted(set(int(p) for p in picks)))[:k]


def make_report(policy: Any = "random", *, env_id: str | None = None,
                env_kwargs: dict | None = None, n_episodes: int = 2, max_steps: int = 200,
                seed: int = 0, out_dir: str | Path = "probe_report", actor: str = "policy",
                reference_actor: str | None = "scripted", live: bool = True,
                live_steps: int | None = None, recordings: Sequence[str | Path] | None = None,
                device: str = "cpu", save_dataset: bool = False,
                log: Callable[[str], None] = print) -> Path:
    """Build the report in ``out_dir``; returns the path of ``index.html``."""
    from mtsandbox.interp import attribution as attr
    from mtsandbox.interp import behaviour as beh
    from mtsandbox.interp import data as data_mod
    from mtsandbox.interp import intervene as iv
    from mtsandbox.interp import probes as pr

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"policy": str(policy), "seed": seed, "notes": []}
    notes: list[str] = summary["notes"]
    live_steps = live_steps or max_steps

    if env_id is None and isinstance(policy, (str, Path)) and str(policy) != "random":
        from mtsandbox.agents.checkpoints import read_meta

        meta = read_meta(policy)
        env_id = meta.get("env_id")
        env_kwargs = {**(meta.get("env_kwargs") or {}), **(env_kwargs or {})}
    env_id = env_id or data_mod.DEFAULT_ENV_ID
    summary["env_id"] = env_id
    env = None
    if recordings is None or live:
        env = data_mod.make_env(env_id, env_kwargs)
    try:
        # ------------------------------------------------------------------ data
        if env is not None:
            meanings = list(env.unwrapped.get_action_meanings())
            space = env.observation_space
            if hasattr(space, "spaces") and "rgb" in getattr(space, "spaces", {}):
                space = space["rgb"]
            act_space = env.action_space
        else:
            assert recordings is not None  # no env is made only when there are recordings
            space, act_space, meanings = data_mod.spaces_from_recordings(recordings)
            meanings = list(meanings or [])
        hooked: HookedPolicy = load_hooked(policy, space, act_space, seed=seed,
                                           action_meanings=meanings, device=device)
        if recordings is not None:
            log(f"building the dataset from recordings {list(map(str, recordings))}")
            ds = data_mod.dataset_from_recordings(recordings, hooked, seed=seed)
            meanings = ds.action_meanings or hooked.action_meanings or meanings
            policy_rows = np.arange(len(ds))
            parts = {"recordings": ds}
        else:
            log(f"collecting {n_episodes} x {max_steps} steps with actor={actor} in {env_id}")
            ds_pol = data_mod.collect_rollouts(hooked, env=env, actor=actor,
                                               n_episodes=n_episodes, max_steps=max_steps,
                                               seed=seed)
            parts = {actor: ds_pol}
            if reference_actor:
                log(f"collecting 1 x {max_steps} steps with reference actor={reference_actor}")
                parts[reference_actor] = data_mod.collect_rollouts(
                    hooked, env=env, actor=reference_actor, n_episodes=1,
                    max_steps=max_steps, seed=seed + 1000)
            ds = data_mod.concat_datasets(list(parts.values()))
            policy_rows = np.arange(len(ds_pol))
            if reference_actor:
                notes.append(f"probe data mixes the {actor} and {reference_actor} episodes: "
                             "concepts that differ between actors (digs, looking at a trunk) "
                             "can be decoded from what each actor's frames look like")
        if hooked.action_meanings is None:
            hooked.action_meanings = list(meanings)
        summary["data"] = {
            "rows": len(ds), "parts": {k: len(v) for k, v in parts.items()},
            "label_means": {k: float(np.nanmean(v)) if np.isfinite(v).any() else None
                            for k, v in ds.labels.items()},
            "episodes": {k: v.meta.get("episodes") for k, v in parts.items()},
        }
        if save_dataset:
            ds.save(out / "dataset.npz")
        probs = ds.probs
        if probs is not None and len(probs):
            ent = float((-(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)).mean())
            rel = ent / math.log(probs.shape[1])
            summary["data"]["policy_entropy_rel"] = rel
            if rel > 0.98:
                notes.append(f"the policy is near-uniform (entropy {rel:.3f} of the maximum; an "
                             "untrained SB3 action head starts with gain 0.01), so ablation, "
                             "patching and steering can barely move its behaviour")

        # ------------------------------------------------------------------ probes
        log("fitting linear probes")
        results = pr.probe_dataset(ds, seed=seed, max_features=2048, l2_grid=(1e-2, 1e-1, 1.0))
        summary["probes"] = [r.to_dict() for r in results]
        probe_png = plot_probes(results, out / "probes.png")
        skipped = [c for c in ds.labels if c not in ds.concepts()]
        if skipped:
            notes.append("concepts without two classes/values (not probed): " + ", ".join(skipped))

        # ------------------------------------------------------------------ attribution
        log("attributions")
        rows = _pick_frames(ds, 4, policy_rows if len(policy_rows) else None)
        obs_sel = ds.obs[rows]
        tiv_lab = ds.labels.get("tree_in_view", np.zeros(len(ds)))
        titles = [f"t={int(ds.t[i])} "
                  f"a={meanings[int(ds.actions[i])] if meanings else ds.actions[i]}"
                  f" tree={tiv_lab[i]:.0f}"
                  for i in rows]
        maps_a = attr.attribute(hooked, obs_sel, ds.actions[rows], target="action", ig_steps=24)
        maps_v = attr.attribute(hooked, obs_sel, target="value", ig_steps=24)
        attr.save_overlays(ds.frames[rows], maps_a, out / "attr_action.png", titles,
                           "attribution of the taken action's logit")
        attr.save_overlays(ds.frames[rows], maps_v, out / "attr_value.png", titles,
                           "attribution of the value")
        summary["attribution_rows"] = rows.tolist()

        # ------------------------------------------------------------------ steering
        steer_png = None
        base_readout = None
        obs_all = ds.obs
        if "tree_in_view" in ds.labels and {0.0, 1.0} <= set(
                np.unique(ds.labels["tree_in_view"][~np.isnan(ds.labels["tree_in_view"])])):
            log("steering vector (tree in view - no tree)")
            vec = iv.steering_vector(ds, STEER_LAYER, "tree_in_view")
            neg = ds.labels["tree_in_view"] == 0
            coefs = [-4.0, -2.0, 0.0, 2.0, 4.0]
            offline = iv.steering_offline(hooked, obs_all[neg][:256], STEER_LAYER, vec, coefs)
            live_res: dict[float, dict] = {}
            if live and env is not None:
                for c in (-2.0, 0.0, 2.0):
                    r = iv.behaviour_readout(hooked, env, 1, live_steps, seed + 7,
                                             [iv.add_vector(STEER_LAYER, vec, c)] if c else [])
                    live_res[c] = r.to_dict()
                base_readout = live_res[0.0]
            summary["steering"] = {"layer": STEER_LAYER, "concept": "tree_in_view",
                                   "vector_norm": float(np.linalg.norm(vec)),
                                   "mean_act_norm": float(np.linalg.norm(
                                       ds.acts[STEER_LAYER].reshape(len(ds), -1), axis=1).mean()),
                                   "offline": offline, "live": live_res}
            steer_png = plot_steering(offline, live_res, meanings, out / "steering.png")
        else:
            notes.append("steering skipped: tree_in_view has a single class in the data")

        # ------------------------------------------------------------------ ablation / patching
        log("channel ablation and patching")
        sub = obs_all[np.linspace(0, len(ds) - 1, min(128, len(ds))).astype(int)]
        eff = iv.channel_ablation_effects(hooked, sub, ABLATE_LAYER)
        top = np.argsort(-eff["kl"])[:3].tolist()
        abl_png = plot_ablation(eff, out / "ablation.png", ABLATE_LAYER)
        abl: dict[str, Any] = {"layer": ABLATE_LAYER, "top_channels": top,
                               "top_kl": [float(eff["kl"][c]) for c in top],
                               "mean_kl": float(eff["kl"].mean())}
        if live and env is not None:
            if base_readout is None:
                base_readout = iv.behaviour_readout(hooked, env, 1, live_steps, seed + 7).to_dict()
            rng = np.random.default_rng(seed)
            rand = rng.choice(len(eff["kl"]), 3, replace=False).tolist()
            abl["live"] = {
                "none": base_readout,
                f"top{top}": iv.behaviour_readout(hooked, env, 1, live_steps, seed + 7,
                                                  [iv.ablate_channels(ABLATE_LAYER, top)]
                                                  ).to_dict(),
                f"random{rand}": iv.behaviour_readout(hooked, env, 1, live_steps, seed + 7,
                                                      [iv.ablate_channels(ABLATE_LAYER, rand)]
                                                      ).to_dict(),
            }
        tiv = ds.labels.get("tree_in_view")
        if tiv is not None and (tiv == 1).any() and (tiv == 0).any():
            import torch

            pos_i = np.nonzero(tiv == 1)[0]
            neg_i = np.nonzero(tiv == 0)[0]
            m = min(64, len(pos_i), len(neg_i))
            src, tgt = ds.obs[pos_i[:m]], ds.obs[neg_i[:m]]
            p0 = hooked.action_probs(tgt)
            p_src = hooked.action_probs(src)
            patch = {}
            for layer in ("hook_conv2", "hook_conv3", "hook_fc"):
                lg, _ = iv.patch_run(hooked, tgt, src, layer)
                p1 = torch.softmax(lg, -1).numpy()
                patch[layer] = {
                    "kl_from_target": float(iv._kl(p0, p1).mean()),
                    "kl_to_source": float(iv._kl(p_src, p1).mean()),
                }
            summary["patching"] = {"desc": "no-tree frames with a layer patched in from "
                                           "tree-in-view frames", "n": m, "layers": patch}
        summary["ablation"] = abl

        # ------------------------------------------------------------------ mirror test
        log("mirror test")
        mr = iv.mirror_test(hooked, obs_all[:256], meanings)
        summary["mirror"] = mr.to_dict()
        mirror_png = plot_mirror(mr, out / "mirror.png")

        # ------------------------------------------------------------------ behaviour
        felling = {name: beh.felling_stats(p, meanings) for name, p in parts.items()}
        summary["felling"] = {k: v.to_dict() for k, v in felling.items()}
        fell_png = plot_felling(felling, out / "felling.png")
        traces = beh.event_traces(ds)
        summary["event_traces"] = [t.to_dict() for t in traces[:50]]
        trace_png = plot_event_traces(traces, meanings, out / "event_traces.png")
    finally:
        if env is not None:
            env.close()

    summary["wall_s"] = time.perf_counter() - t_start
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1))
    index = out / "index.html"
    index.write_text(_html(summary, results, probe_png, steer_png, abl_png, mirror_png, fell_png,
                           trace_png, felling, mr))
    log(f"report written to {index} ({summary['wall_s']:.0f} s)")
    return index


def _img(p: Path | None, alt: str) -> str:
    return f'<img src="{p.name}" alt="{html.escape(alt)}">' if p else "<p><i>no plot</i></p>"


def _html(s, results, probe_png, steer_png, abl_png, mirror_png, fell_png, trace_png,
          felling, mr) -> str:
    probe_rows = [{"layer": r.layer, "concept": r.concept, "metric": r.metric,
                   "test": r.test_score, "control": r.control_score, "baseline": r.baseline,
                   "balanced acc": r.balanced_accuracy,
                   "control balanced": r.control_balanced_accuracy, "train": r.train_score,
                   "n train/test": f"{r.n_train}/{r.n_test}"} for r in results]
    d = s["data"]
    parts = ", ".join(f"{k}: {v} rows" for k, v in d["parts"].items())
    labels = [{"label": k, "mean": v} for k, v in d["label_means"].items()]
    steer = s.get("steering")
    steer_rows = []
    if steer and steer.get("live"):
        for c, r in steer["live"].items():
            steer_rows.append({"coef": c, "trunks dug": r["trunks_dug"],
                               "tree in view": r["tree_in_view_frac"],
                               "return": r["observed_return"],
                               "button presses": r["button_presses"]})
    abl = s["ablation"]
    abl_rows = [{"ablated": k, "trunks dug": r["trunks_dug"], "tree in view":
                 r["tree_in_view_frac"], "return": r["observed_return"]}
                for k, r in (abl.get("live") or {}).items()]
    patch = s.get("patching")
    patch_rows = [{"layer": k, **v} for k, v in (patch or {}).get("layers", {}).items()]
    fell_rows = [{"actor": k, "digs": v.n_trunk_digs, "digs/episode": v.digs_per_episode,
                  "bottom-skip rate": v.bottom_skip_rate,
                  "first log not bottom": v.tree_first_not_bottom_rate,
                  "jump-up digs": f"{v.jump_up_digs}/{v.high_digs}",
                  "heights in order": " | ".join(" ".join(map(str, h)) for h in
                                                 v.heights_in_order)}
                 for k, v in felling.items()]
    mirror_rows = [{"TV swapped": mr.tv_swapped, "TV unswapped": mr.tv_unswapped,
                    "KL swapped": mr.kl_swapped, "argmax agree (swapped)":
                    mr.argmax_agree_swapped, "L-R mass corr": mr.lr_mass_corr,
                    "|Δ value|": mr.value_abs_diff}]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in s["notes"])
    css = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
           "table{border-collapse:collapse;font-size:12px;margin:.5em 0}"
           "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
           "img{max-width:100%;border:1px solid #eee}")
    steer_txt = (f"<p>vector at <code>{steer['layer']}</code>: mean activation(tree in view) − "
                 f"mean activation(no tree); |v| = {_fmt(steer['vector_norm'])}, mean |a| = "
                 f"{_fmt(steer['mean_act_norm'])}.</p>" if steer else "")
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>probe report: {html.escape(s['policy'])}</title><style>{css}</style></head><body>
<h1>Probe report</h1>
<p>policy <code>{html.escape(s['policy'])}</code>, env <code>{html.escape(s['env_id'])}</code>,
seed {s['seed']}, {d['rows']} rows ({html.escape(parts)}); built in {s['wall_s']:.0f} s.</p>
<ul>{notes}</ul>
<h2>Labels</h2>{_table(labels)}
<h2>Linear probes</h2>
<p>Logistic (binary concepts, accuracy) or ridge (continuous, R²) probes on each layer;
held-out chunks of 16 steps; the grey bars are the same probe fit on shuffled labels. Binary
concepts are plotted as balanced accuracy (chance 0.5); the table also has plain accuracy and
the majority-class baseline. R² below 0 is clipped at −1 in the plot.</p>
{_img(probe_png, "probes")}{_table(probe_rows)}
<h2>Attribution</h2>
<p>Integrated gradients (black baseline), saliency and occlusion (8x8 window, stride 4).</p>
<img src="attr_action.png" alt="action attribution">
<img src="attr_value.png" alt="value attribution">
<h2>Steering</h2>{steer_txt}{_img(steer_png, "steering")}{_table(steer_rows)}
<h2>Channel ablation and patching</h2>{_img(abl_png, "ablation")}
<p>top channels by KL: {abl['top_channels']} (KL {[round(k, 4) for k in abl['top_kl']]},
mean over channels {_fmt(abl['mean_kl'], 4)})</p>{_table(abl_rows)}
<p>Patching ({html.escape((patch or {}).get('desc', 'skipped'))}):</p>{_table(patch_rows)}
<h2>Mirror test</h2>
<p>Observations flipped left-right; action probabilities compared after swapping left/right and
turn_left/turn_right (TV swapped &lt; TV unswapped and a negative L-R correlation mean the
policy mirrors its turning).</p>{_img(mirror_png, "mirror")}{_table(mirror_rows)}
<h2>Tree felling</h2>{_img(fell_png, "felling")}{_table(fell_rows)}
<h2>Button / switch traces</h2>
{_img(trace_png, "event traces") if trace_png else NO_TRACES}
</body></html>
"""
