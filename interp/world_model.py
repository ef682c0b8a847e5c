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
    n = 0
    for ei, e in enumerate(eps):
        if n >= max_frames:
            break
        frames_all = model.resize(e.obs)
        aux = aux_labels(frames_all).numpy()
        mem = _memory_label(aux[:, 0] > 0.5, memory)
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


__all__ = ["WM_LAYERS", "wm_activation_dataset"]
