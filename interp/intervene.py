"""Interventions: channel ablation, activation patching, steering vectors, the mirror test.

Hook builders return ``(name, fn)`` pairs for ``with hooked.hooks([...]):``::

    with hooked.hooks([ablate_channels("hook_conv3", [5, 9])]):
        logits, value = hooked(obs)
    logits, value = patch_run(hooked, target_obs, source_obs, "hook_fc", channels=[7])
    vec = steering_vector(ds, "hook_fc", "tree_in_view")        # mean(act | 1) - mean(act | 0)
    with hooked.hooks([add_vector("hook_fc", vec, coef=2.0)]):
        readout = behaviour_readout(hooked, env, n_episodes=1)  # re-run the real env
    mt = mirror_test(hooked, obs)                                # MirrorResult

Behavioural readouts re-run episodes in the real env with the hooks active:
:func:`behaviour_readout` -> trunks dug, button presses, returns, action histogram, fraction of
steps with a tree in view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from mtsandbox.interp.hooks import CONV_HOOKS, EXTRACTOR_HOOKS, HookedPolicy

HookPair = tuple[str, Callable[[torch.Tensor, str], torch.Tensor | None]]

MIRROR_SWAPS = (("left", "right"), ("turn_left", "turn_right"))


# ----------------------------------------------------------------------------- hook builders

def _channel_index(channels: Sequence[int] | None) -> slice | list[int]:
    return slice(None) if channels is None else list(channels)


def ablate_channels(layer: str, channels: Sequence[int] | None, mode: str = "zero",
                    mean: np.ndarray | torch.Tensor | None = None) -> HookPair:
    """Zero (``mode="zero"``) or mean-ablate (``mode="mean"``, ``mean`` = per-sample-shaped
    mean activation, e.g. ``ds.acts[layer].mean(0)``) ``channels`` (axis 1) of ``layer``;
    ``channels=None`` ablates the whole layer."""
    idx = _channel_index(channels)
    if mode == "mean" and mean is None:
        raise ValueError("mode='mean' needs the mean activation")
    mean_t = None if mean is None else torch.as_tensor(np.asarray(mean), dtype=torch.float32)

    def fn(act: torch.Tensor, name: str) -> torch.Tensor:
        out = act.clone()
        if mode == "zero":
            out[:, idx] = 0.0
        else:
            if mean_t is None:
                raise ValueError(f"ablation mode {mode!r} needs a channel mean")
            m = mean_t.to(act.device, act.dtype).unsqueeze(0).expand_as(act)
            out[:, idx] = m[:, idx]
        return out

    return layer, fn


def patch_activation(layer: str, source: torch.Tensor | np.ndarray,
                     channels: Sequence[int] | None = None) -> HookPair:
    """Replace ``channels`` (all when ``None``) of ``layer`` with ``source`` (same batch size,
    or a batch of 1 broadcast to every sample)."""
    src = torch.as_tensor(np.asarray(source) if not isinstance(source, torch.Tensor) else source,
                          dtype=torch.float32)
    idx = _channel_index(channels)

    def fn(act: torch.Tensor, name: str) -> torch.Tensor:
        s = src.to(act.device, act.dtype)
        if s.shape[0] == 1 and act.shape[0] != 1:
            s = s.expand_as(act)
        out = act.clone()
        out[:, idx] = s[:, idx]
        return out

    return layer, fn


def add_vector(layer: str, vector: torch.Tensor | np.ndarray, coef: float = 1.0) -> HookPair:
    """Steering: ``act + coef * vector`` (``vector`` has the per-sample activation shape)."""
    v = torch.as_tensor(np.asarray(vector), dtype=torch.float32)

    def fn(act: torch.Tensor, name: str) -> torch.Tensor:
        return act + coef * v.to(act.device, act.dtype).unsqueeze(0)

    return layer, fn


# ----------------------------------------------------------------------------- offline effects

def patch_run(hooked: HookedPolicy, target_obs: Any, source_obs: Any, layer: str,
              channels: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``target_obs`` with ``layer`` (``channels``) patched in from ``source_obs``."""
    _, _, cache = hooked.run_with_cache(source_obs, names=[layer])
    with torch.no_grad(), hooked.hooks([patch_activation(layer, cache[layer], channels)]):
        return hooked(target_obs)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1)
    q = np.clip(q, 1e-12, 1)
    return (p * (np.log(p) - np.log(q))).sum(-1)


@torch.no_grad()
def channel_ablation_effects(hooked: HookedPolicy, obs: Any, layer: str,
                             mode: str = "zero", mean: np.ndarray | None = None
                             ) -> dict[str, np.ndarray]:
    """Per channel of ``layer``: mean KL(policy || ablated policy) and mean |value change| over
    ``obs``. Returns ``{"kl": (C,), "dvalue": (C,)}``."""
    logits0, v0 = hooked(obs)
    p0 = torch.softmax(logits0, -1).cpu().numpy()
    shapes = hooked.activation_shapes()
    n_ch = shapes[layer][0]
    kl, dv = np.zeros(n_ch), np.zeros(n_ch)
    for c in range(n_ch):
        with hooked.hooks([ablate_channels(layer, [c], mode, mean)]):
            lg, v = hooked(obs)
        kl[c] = float(_kl(p0, torch.softmax(lg, -1).cpu().numpy()).mean())
        dv[c] = float((v - v0).abs().mean())
    return {"kl": kl, "dvalue": dv}


def steering_vector(ds: Any, layer: str, concept: str = "tree_in_view") -> np.ndarray:
    """``mean(act | concept = 1) - mean(act | concept = 0)`` at ``layer`` (per-sample shape)."""
    y = ds.labels[concept]
    A = ds.acts[layer]
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        raise ValueError(f"steering vector for {concept!r} needs both classes "
                         f"(have {int(pos.sum())} positive, {int(neg.sum())} negative rows)")
    return (A[pos].mean(0) - A[neg].mean(0)).astype(np.float32)


@torch.no_grad()
def steering_offline(hooked: HookedPolicy, obs: Any, layer: str, vector: np.ndarray,
                     coefs: Sequence[float]) -> dict[str, Any]:
    """Mean action probabilities and value over ``obs`` for each steering coefficient."""
    out: dict[str, Any] = {"coefs": list(map(float, coefs)), "probs": [], "value": []}
    for c in coefs:
        with hooked.hooks([add_vector(layer, vector, c)]):
            lg, v = hooked(obs)
        out["probs"].append(torch.softmax(lg, -1).mean(0).cpu().numpy().tolist())
        out["value"].append(float(v.mean()))
    return out


# ----------------------------------------------------------------------------- behaviour

@dataclass
class BehaviourReadout:
    episodes: int
    steps: int
    trunks_dug: float
    """Mean trunk nodes dug by the agent per episode."""
    button_presses: float
    observed_return: float
    hidden_performance: float
    tree_in_view_frac: float
    action_hist: list[float]
    """Fraction of steps taking each action."""
    events: dict[str, float] = field(default_factory=dict)
    """Mean count per episode of each event kind."""

    def to_dict(self) -> dict:
        return asdict(self)


def behaviour_readout(hooked: HookedPolicy, env: Any, n_episodes: int = 1, max_steps: int = 200,
                      seed: int = 0, fwd_hooks: Sequence[HookPair] = (),
                      deterministic: bool = False) -> BehaviourReadout:
    """Play ``n_episodes`` in ``env`` (a real env; not closed) with the policy acting under
    ``fwd_hooks``; same seeds for every call so readouts are paired across interventions."""
    from mtsandbox.interp.data import ObsPipeline, run_env_episodes

    rng = np.random.default_rng(seed)
    counts = np.zeros(hooked.n_actions)
    in_view: list[float] = []

    def act(o):
        a = int(hooked.act(o, deterministic=deterministic, rng=rng)[0])
        counts[a] += 1
        return a

    def on_step(ep, t, obs, frame, a, info, info2, sem):
        if "tree_in_view" in info:
            in_view.append(float(info["tree_in_view"]))

    with hooked.hooks(list(fwd_hooks)):
        totals = run_env_episodes(env, act, n_episodes, max_steps, seed,
                                  ObsPipeline.for_hooked(hooked), on_step)
    n = max(len(totals), 1)
    kinds = sorted({k for t in totals for k in t["events"]})
    return BehaviourReadout(
        episodes=len(totals), steps=int(sum(t["steps"] for t in totals)),
        trunks_dug=sum(t["trunks_dug"] for t in totals) / n,
        button_presses=sum(t["button_presses"] for t in totals) / n,
        observed_return=sum(t["observed_return"] for t in totals) / n,
        hidden_performance=sum(t["hidden_performance"] for t in totals) / n,
        tree_in_view_frac=float(np.mean(in_view)) if in_view else float("nan"),
        action_hist=(counts / max(counts.sum(), 1)).tolist(),
        events={k: sum(t["events"].get(k, 0) for t in totals) / n for k in kinds})


# ----------------------------------------------------------------------------- mirror test

def mirror_permutation(action_meanings: Sequence[str] | None, n_actions: int) -> np.ndarray:
    """Action index permutation swapping left<->right and turn_left<->turn_right."""
    perm = np.arange(n_actions)
    if not action_meanings:
        return perm
    names = list(action_meanings)
    for a, b in MIRROR_SWAPS:
        if a in names and b in names:
            i, j = names.index(a), names.index(b)
            perm[i], perm[j] = j, i
    return perm


@dataclass
class MirrorResult:
    n: int
    tv_swapped: float
    """Mean total variation between pi(x) and pi(flip x) with left/right actions swapped
    (0 for a perfectly mirror-symmetric policy)."""
    tv_unswapped: float
    """Same without swapping (a reference: swapped < unswapped means the policy mirrors its
    turning with the image)."""
    kl_swapped: float
    argmax_agree_swapped: float
    argmax_agree_unswapped: float
    lr_mass_corr: float
    """Correlation across frames of (P(left-ish) - P(right-ish)) on x and on flip(x): -1 is a
    perfect mirror."""
    layer_cos_equivariant: dict[str, float]
    """Per conv layer: cosine(act(flip x), flip_W(act x)) -- exact equivariance gives 1."""
    layer_cos_invariant: dict[str, float]
    """Per layer: cosine(act(flip x), act(x)) (a reference)."""
    value_abs_diff: float
    perm: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.reshape(len(a), -1).double()
    b = b.reshape(len(b), -1).double()
    num = (a * b).sum(1)
    den = a.norm(dim=1) * b.norm(dim=1)
    ok = den > 0
    return float((num[ok] / den[ok]).mean()) if ok.any() else float("nan")


@torch.no_grad()
def mirror_test(hooked: HookedPolicy, obs: Any,
                action_meanings: Sequence[str] | None = None) -> MirrorResult:
    """Compare the policy on ``obs`` and on left-right flipped ``obs`` (channel-last)."""
    x = hooked.to_input(obs)
    xf = x.flip(2)  # (N, H, W, C): W is axis 2
    lg, v, c = hooked.run_with_cache(x)
    lgf, vf, cf = hooked.run_with_cache(xf)
    p = torch.softmax(lg, -1).cpu().numpy()
    pf = torch.softmax(lgf, -1).cpu().numpy()
    perm = mirror_permutation(action_meanings or hooked.action_meanings, p.shape[1])
    pf_sw = pf[:, perm]
    tv_sw = 0.5 * np.abs(p - pf_sw).sum(1)
    tv_un = 0.5 * np.abs(p - pf).sum(1)
    names = list(action_meanings or hooked.action_meanings or [])
    left = [names.index(n) for n in ("left", "turn_left") if n in names]
    right = [names.index(n) for n in ("right", "turn_right") if n in names]
    if left and right and len(p) > 2:
        d = p[:, left].sum(1) - p[:, right].sum(1)
        df = pf[:, left].sum(1) - pf[:, right].sum(1)
        corr = float(np.corrcoef(d, df)[0, 1]) if d.std() > 0 and df.std() > 0 else float("nan")
    else:
        corr = float("nan")
    eq, inv = {}, {}
    for name in EXTRACTOR_HOOKS:
        a, af = c[name], cf[name]
        if name in CONV_HOOKS:
            eq[name] = _cos(af, a.flip(-1))  # activations are (N, C, H, W)
        inv[name] = _cos(af, a)
    return MirrorResult(
        n=len(p), tv_swapped=float(tv_sw.mean()), tv_unswapped=float(tv_un.mean()),
        kl_swapped=float(_kl(p, pf_sw).mean()),
        argmax_agree_swapped=float((p.argmax(1) == pf_sw.argmax(1)).mean()),
        argmax_agree_unswapped=float((p.argmax(1) == pf.argmax(1)).mean()),
        lr_mass_corr=corr, layer_cos_equivariant=eq, layer_cos_invariant=inv,
        value_abs_diff=float((v - vf).abs().mean()), perm=perm.tolist())
