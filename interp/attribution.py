"""Pixel attributions with Captum: integrated gradients, saliency and occlusion, for the taken
action's logit or for the value; PNG overlays on the frames.

    from mtsandbox.interp.attribution import attribute, save_overlays
    maps = attribute(hooked, obs, actions, target="action")   # {"ig": (N, H, W), ...}
    maps_v = attribute(hooked, obs, target="value")
    save_overlays(frames, maps, "attr.png", titles=[...])

Attributions are computed in pixel space (float ``(N, H, W, C)`` in ``[0, 1]``) and reduced to
``(N, H, W)`` by summing absolute values over channels (``signed=True`` keeps the sign and sums
instead). Any hooks active on the :class:`HookedPolicy` (``with hooked.hooks(...)``) apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtsandbox.interp.hooks import HookedPolicy

METHODS = ("ig", "saliency", "occlusion")


class _Head(nn.Module):
    """float (N, H, W, C) pixels in [0, 1] -> logits (N, A) or value (N,)."""

    def __init__(self, hooked: HookedPolicy, target: str) -> None:
        super().__init__()
        self.hooked = hooked
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, value = self.hooked(x)
        return logits if self.target == "action" else value[:, 0]


def attribute(hooked: HookedPolicy, obs: Any, actions: Sequence[int] | np.ndarray | None = None,
              target: str = "action", methods: Sequence[str] = METHODS, *,
              ig_steps: int = 32, baseline: str | float = 0.0, occlusion_window: int = 8,
              occlusion_stride: int = 4, signed: bool = False) -> dict[str, np.ndarray]:
    """Attribution maps ``{method: (N, H, W) float32}``.

    ``target``: ``"action"`` (the logit of ``actions[i]``; default: the argmax action) or
    ``"value"``. ``baseline``: a constant pixel value in [0, 1] or ``"mean"`` (the batch's mean
    frame) for IG and occlusion.
    """
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    if target not in ("action", "value"):
        raise ValueError("target must be 'action' or 'value'")
    x = hooked.to_input(obs).detach()
    c = x.shape[-1]
    head = _Head(hooked, target)
    tgt: torch.Tensor | None = None
    if target == "action":
        if actions is None:
            with torch.no_grad():
                actions = head(x).argmax(-1).cpu().numpy()
        tgt = torch.as_tensor(np.asarray(actions).reshape(-1), dtype=torch.long, device=x.device)
    if isinstance(baseline, str) and baseline == "mean":
        base = x.mean(0, keepdim=True).expand_as(x).contiguous()
    else:
        base = torch.full_like(x, float(baseline))
    out: dict[str, np.ndarray] = {}
    for m in methods:
        if m == "ig":
            a = IntegratedGradients(head).attribute(x, baselines=base, target=tgt,
                                                    n_steps=ig_steps,
                                                    internal_batch_size=max(ig_steps, 1))
        elif m == "saliency":
            a = Saliency(head).attribute(x.clone().requires_grad_(True), target=tgt, abs=not signed)
        elif m == "occlusion":
            a = Occlusion(head).attribute(
                x, sliding_window_shapes=(occlusion_window, occlusion_window, c),
                strides=(occlusion_stride, occlusion_stride, c), baselines=base, target=tgt,
                perturbations_per_eval=16)
        else:
            raise ValueError(f"unknown attribution method {m!r}; have {METHODS}")
        a = a.detach()
        red = a.sum(-1) if signed else a.abs().sum(-1)
        out[m] = red.cpu().numpy().astype(np.float32)
    return out


def mass_in_region(amap: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    """Fraction of absolute attribution mass inside ``region`` (per sample)."""
    a = np.abs(np.asarray(amap))
    if a.ndim == 2:
        a = a[None]
    tot = a.reshape(len(a), -1).sum(1)
    inside = a[(slice(None), *region)].reshape(len(a), -1).sum(1)
    return np.where(tot > 0, inside / np.maximum(tot, 1e-12), 0.0)


def overlay(frame: np.ndarray, amap: np.ndarray, alpha: float = 0.55,
            cmap: str = "inferno") -> np.ndarray:
    """RGB uint8 frame blended with a normalised heatmap of ``amap`` (same H, W)."""
    import matplotlib

    f = np.asarray(frame)
    if f.shape[-1] != 3:
        f = np.repeat(f[..., -1:], 3, -1)
    f = f.astype(np.float32) / 255.0
    a = np.abs(np.asarray(amap, dtype=np.float32))
    hi = np.percentile(a, 99) if a.max() > 0 else 1.0
    a = np.clip(a / max(hi, 1e-12), 0, 1)
    heat = matplotlib.colormaps[cmap](a)[..., :3]
    out = (1 - alpha * a[..., None]) * f + alpha * a[..., None] * heat
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def save_overlays(frames: np.ndarray, maps: dict[str, np.ndarray], path: str | Path,
                  titles: Sequence[str] | None = None, suptitle: str | None = None) -> Path:
    """Grid PNG: one row per frame; columns = the frame, then one overlay per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.asarray(frames)
    n = len(frames)
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.3 * n), squeeze=False)
    for i in range(n):
        f = frames[i] if frames[i].shape[-1] == 3 else np.repeat(frames[i][..., -1:], 3, -1)
        axes[i, 0].imshow(f, interpolation="nearest")
        axes[i, 0].set_title(titles[i] if titles else f"frame {i}", fontsize=7)
        for j, (m, a) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(overlay(f, a[i]), interpolation="nearest")
            if i == 0:
                axes[i, j].set_title(m, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=90)
    plt.close(fig)
    return p
