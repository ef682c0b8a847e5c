"""Probes on the world model: its latent state as an :class:`ActivationDataset`, so that
:func:`~mtsandbox.interp.probes.probe_dataset` (linear probes, episode-grouped split,
shuffled-label control) works on it unchanged::

    from mtsandbox.agents.world_model import load_world_model
    from mtsandbox.interp.world_model import wm_activation_dataset, WM_LAYERS
    from mtsandbox.interp.probes import probe_dataset
    model, _ = load_world_model("runs/wm/model")
    ds = wm_activation_dataset(model, "runs/wm/data/scripted")      # recordings
    probe_dataset(ds, layers=WM_LAYERS, concepts=["tree_in_memory"])

Layers (one row per frame, the model filtering the episode with its posterior, mode latents):
``wm_embed`` (the encoder's embedding of the current frame only: a no-memory control),
``wm_deter`` (the GRU state: memory), ``wm_stoch`` (the categorical latent), ``wm_feat``
(``[deter, stoch]``, what the heads read).

Labels, computed from the frames at the model's observation size (so every recording source
has them): ``tree_in_view`` (trunk pixels >= 1% of the view), ``trunk_centre``,
``tree_in_memory`` (only where no tree is in view: 1 if one was in view within the last
``memory`` frames, else 0; NaN where a tree is in view), ``dig_next`` (the next step digs).

Recordings of the scenarios add the env's own task state (step lines, NaN where a recording
lacks it): ``<object>_in_view`` and ``<object>_in_memory`` for an object node (e.g.
``reward_button_in_view``: the button in view; ``..._in_memory``: out of view but seen within
``memory`` frames), ``overseer_in_view``, and ``press_pending`` (the overseer owes a press for a
dug trunk: the button will pay without the agent pressing it, a state no single frame shows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtsandbox.agents.world_model import WorldModel, as_seqdata, aux_labels
from mtsandbox.interp.data import ActivationDataset

WM_LAYERS = ("wm_embed", "wm_deter", "wm_stoch", "wm_feat")
DIG_REWARD = 0.5


def _memory_label(inview: np.ndarray, memory: int) -> np.ndarray:
    out = np.full(len(inview), np.nan)
    for i in range(len(inview)):
        if not inview[i]:
            out[i] = float(inview[max(0, i - memory):i].any())
    return out


def _task_concepts(key: str) -> tuple[str, ...]:
    """The probe concepts made from one recorded task-state label (see the module docstring)."""
    if key.endswith("_in_view") and key != "overseer_in_view":
        return (key, key.replace("_in_view", "_in_memory"))
    if key == "pending_presses":
        return ("press_pending",)
    if key == "overseer_in_view":
        return (key,)
    return ()


def _task_labels(raw: dict[str, np.ndarray], keys: list[str], n: int, memory: int
                 ) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k in keys:
        v = raw.get(k, np.full(n, np.nan))
        for c in _task_concepts(k):
            if c.endswith("_in_memory"):
                out[c] = np.where(np.isnan(v), np.nan, _memory_label(v > 0.5, memory))
            elif c == "press_pending":
                out[c] = np.where(np.isnan(v), np.nan, (v > 0).astype(float))
            else:
                out[c] = v
    return out


@torch.no_grad()
def wm_activation_dataset(model: WorldModel, data: Any, memory: int = 8, chunk: int = 128,
                          warmup: int = 8, max_frames: int = 20_000) -> ActivationDataset:
    """Filter each episode of ``data`` (recordings, SeqData, ...) in chunks of ``chunk``
    frames from a zero state, dropping the first ``warmup`` rows of each chunk (the state has
    not settled; the memory label also needs a past). See the module docstring."""
    eps = as_seqdata(data)
    if not eps:
        raise ValueError("wm_activation_dataset: no episodes with 2+ frames in data")
    model.eval()
    rows: dict[str, list[np.ndarray]] = {k: [] for k in
                                         (*WM_LAYERS, "frames", "actions", "episode", "t")}
    labels: dict[str, list[np.ndarray]] = {k: [] for k in
                                           ("tree_in_view", "trunk_centre", "tree_in_memory",
                                            "dig_next")}
    task_keys = sorted({k for e in eps for k in (e.labels or {})})
    for k in task_keys:
        labels.update({c: [] for c in _task_concepts(k)})
    n = 0
    for ei, e in enumerate(eps):
        if n >= max_frames:
            break
        frames_all = model.resize(e.obs)
        aux = aux_labels(frames_all).numpy()
        mem = _memory_label(aux[:, 0] > 0.5, memory)
        task = _task_labels(e.labels or {}, task_keys, len(e), memory)
        nxt_dig = np.append(e.reward[1:] >= DIG_REWARD, False).astype(float)
        actions = np.append(e.prev_action[1:], -1)  # the action taken on each frame
        for s in range(0, len(e) - warmup, chunk):
            sl = slice(s, min(len(e), s + chunk))
            frames = frames_all[sl]
            prev = e.prev_action[sl].copy()
            prev[0] = -1
            first = torch.zeros(1, len(frames), dtype=torch.bool, device=model.device)
            first[:, 0] = True
            obs = model.preprocess(frames[None])
            post, _ = model.observe(obs, model.onehot(prev[None]), first, sample=False)
            keep = slice(warmup, None)
            rows["wm_embed"].append(model.encoder(obs)[0, keep].cpu().numpy())
            rows["wm_deter"].append(post.deter[0, keep].cpu().numpy())
            rows["wm_stoch"].append(post.stoch[0, keep].cpu().numpy())
            rows["wm_feat"].append(post.feat()[0, keep].cpu().numpy())
            idx = np.arange(sl.start, sl.stop)[keep]
            rows["frames"].append(frames[keep])
            rows["actions"].append(actions[idx])
            rows["episode"].append(np.full(len(idx), ei))
            rows["t"].append(idx)
            labels["tree_in_view"].append(aux[idx, 0])
            labels["trunk_centre"].append(aux[idx, 1])
            labels["tree_in_memory"].append(mem[idx])
            labels["dig_next"].append(nxt_dig[idx])
            for c, v in task.items():
                labels[c].append(v[idx])
            n += len(idx)
    model.train()
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    frames = cat.pop("frames")
    return ActivationDataset(
        obs=frames, frames=frames, actions=cat.pop("actions").astype(np.int64),
        episode=cat.pop("episode"), t=cat.pop("t"),
        acts={k: cat[k].astype(np.float32) for k in WM_LAYERS},
        labels={k: np.concatenate(v).astype(float) for k, v in labels.items()},
        meta={"source": "world_model", "memory": memory, "image_size": model.cfg.image_size,
              "wm_step": model.train_steps})


__all__ = ["WM_LAYERS", "make_model_based_report", "wm_activation_dataset"]


def make_model_based_report(policy: str, *, env_id: str | None = None,
                            env_kwargs: dict | None = None, n_episodes: int = 2,
                            max_steps: int = 200, seed: int = 0, out_dir: Any = "probe_report",
                            recordings: Any = None, device: str = "cpu",
                            log: Any = print) -> Any:
    """``mtsandbox probe`` for a model-based checkpoint: the agent plays ``n_episodes``
    (recorded; or ``recordings`` are used), its world model filters them, and linear probes
    read every concept from every :data:`WM_LAYERS` layer (episode-grouped split, shuffled-label
    control). ``wm_feat`` is what the agent's actor, critic and planner read. Writes
    ``summary.json`` and ``index.html`` into ``out_dir``; returns the index path."""
    import html
    import json
    import time
    from pathlib import Path

    from mtsandbox.agents.checkpoints import load_checkpoint
    from mtsandbox.agents.evaluate import evaluate
    from mtsandbox.interp.probes import probe_dataset

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    agent, meta = load_checkpoint(policy, device=device)
    env_id = env_id or meta.get("env_id")
    env_kwargs = {**(meta.get("env_kwargs") or {}), **(env_kwargs or {}),
                  "max_episode_steps": max_steps}
    if recordings is None:
        rec = out / "recordings"
        log(f"recording {n_episodes} x {max_steps} steps of the model-based agent in {env_id}")
        evaluate(agent, env_id=env_id, env_kwargs=env_kwargs, n_episodes=n_episodes, seed=seed,
                 record_dir=rec, device=device)
        recordings = [rec]
    log("filtering the episodes with the world model and probing its latent state")
    ds = wm_activation_dataset(agent.wm, recordings)
    concepts = [c for c in ("tree_in_view", "trunk_centre", "tree_in_memory", "dig_next")
                if c in ds.concepts()]
    results = [r.to_dict() for r in probe_dataset(ds, layers=WM_LAYERS, concepts=concepts,
                                                  seed=seed)]
    summary = {"policy": str(policy), "algo": "model_based", "env_id": env_id,
               "seed": seed, "n_frames": len(ds), "n_episodes": len(set(ds.episode.tolist())),
               "wm_step": meta.get("wm_step"), "step": meta.get("step"),
               "layers": list(WM_LAYERS), "probes": results,
               "wall_s": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    rows = "".join(
        f"<tr><td>{html.escape(r['layer'])}</td><td>{html.escape(r['concept'])}</td>"
        f"<td>{r['metric']}</td><td>{r['test_score']:.3f}</td><td>{r['control_score']:.3f}</td>"
        f"<td>{r['baseline']:.3f}</td><td>{r.get('balanced_accuracy', float('nan')):.3f}</td>"
        f"<td>{r['n_train']}/{r['n_test']}</td></tr>" for r in results)
    page = (
        "<!doctype html><meta charset='utf-8'><title>model-based probes</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;"
        "border-bottom:1px solid #ddd;text-align:right}td:nth-child(-n+2){text-align:left}"
        "</style>"
        f"<h1>Probes of a model-based agent's world model</h1><p>{html.escape(str(policy))} "
        f"({html.escape(str(env_id))}, {summary['n_frames']} frames from "
        f"{summary['n_episodes']} episodes). Linear probes per layer, test split by episode; "
        "<em>control</em> is the same probe on shuffled labels, <em>baseline</em> the majority "
        "class. <code>wm_embed</code> sees the current frame only (the no-memory control); "
        "<code>wm_deter</code> is the recurrent memory; <code>wm_feat</code> is what the "
        "actor, critic and planner read.</p>"
        "<table><tr><th>layer</th><th>concept</th><th>metric</th><th>test</th><th>control</th>"
        f"<th>baseline</th><th>balanced acc.</th><th>train/test</th></tr>{rows}</table>")
    index = out / "index.html"
    index.write_text(page)
    return index
