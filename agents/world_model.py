"""A small DreamerV3-style, action-conditioned world model of the sandbox's view.

Pieces (small enough to train on a couple of CPU cores; CUDA is used when present):

* :class:`ConvEncoder` -- frame -> embedding (one stride-2 conv per halving down to 4x4,
  channel LayerNorm + SiLU after each, then a linear layer).
* :class:`RSSM` -- recurrent latent dynamics: a GRU deterministic state ``h`` and a stochastic
  latent ``z`` of ``n_cat`` categoricals with ``n_cls`` classes each (straight-through
  gradients, 1% uniform mix). ``img_step(state, action)`` is the *prior* (no observation),
  ``obs_step(state, action, embed)`` the *posterior*. Actions are one-hot.
* :class:`ConvDecoder` -- model state ``feat = [h, z]`` -> frame (mean of a unit Gaussian on
  ``[0, 1]`` pixels); heads on ``feat``: reward (two-hot), continue (Bernoulli logit, 0 = the
  episode terminated on arrival at this frame; time-limit truncation is *not* an end) and the
  auxiliary task heads ``tree_in_view`` / ``trunk_centre`` (labels computed from the frame);
  optionally (``trunk_map > 0``) a fourth decoder channel, the per-pixel trunk logit.
* Losses: reconstruction (sum of squared errors over pixels, trunk pixels weighted
  ``1 + trunk_weight``), trunk map (per-pixel BCE summed over the view), reward (two-hot
  cross-entropy), continue, auxiliary (BCE) and KL
  balancing with free bits
  (``kl_dyn * max(free, KL(sg(post) || prior)) + kl_rep * max(free, KL(post || sg(prior)))``).

**The observation (format 2).** Frames are area-averaged from 64x64 to 32x32 RGB
(``image_size``). The sandbox's renderer draws flat-shaded nodes whose textures are a few texels
wide: at 32x32 the trunks, leaves, sky and grass keep their shapes and colours while the
per-texel detail, which a small decoder cannot predict, is averaged away (on scripted play it is
0.0033 MSE per pixel at 64x64, an eighth of copy-last-frame's one-step error there, 0.027); the
conv stack is 4x cheaper. The semantic class map would be cleaner still but is
not in recordings of the real client or of human play; RGB is (all sources feed one dataset).
``image_size=64`` (with ``channels=32``, ``deter=512``) is the GPU-sized config.

**DreamerV3 recipe: kept** -- RSSM with 16x16 categorical latents, 1% unimix, straight-through
samples, KL balancing 0.5 / 0.1 with 1 free nat, two-hot symlog reward head over 255 bins in
[-20, 20] with a zero-initialised output layer, LayerNorm + SiLU everywhere, Adam with gradient
clipping. **Departures** -- a smaller model (deter 256, 16 base channels; DreamerV3-S has 512 and
32), lr 3e-4 rather than 1e-4 (short CPU budgets), sequences of 32 rather than 64, pixels as a
Gaussian MSE rather than symlog-MSE (values are in [0, 1]), a trunk-weighted pixel loss, the
auxiliary heads and the trunk map (none is in DreamerV3: they keep the few task-relevant pixels
from losing to sky and grass; the trunk map also gives a prediction of *where* the tree is that
does not depend on the imagined frame's colours staying sharp), a 32x32 view, and, opt-in
(``overshoot > 0``), an open-loop decoding loss on imagined states (after PlaNet's latent
overshooting; measured once so far in results/world_model/overshoot_report.json: 2k updates
with ``overshoot 8`` did not make imagined trunks sharp enough for the state-tracking probe),
and, opt-in (``copy_gate``), a per-pixel compositing gate between the decoder's drawing and the
last real frame (after Finn et al. 2016's masks), so that a prediction need not redraw sharp
pixels that did not change (:func:`with_copy_gate` adds one to a trained model).

Time alignment (Dreamer's convention; see :class:`SeqData`): entry ``t`` of a sequence holds the
frame ``o_t``, the action that *led to it* ``a_{t-1}`` (``prev_action``; none at an episode's
first frame), the reward returned with it ``r_{t-1}`` and ``cont_t``. With the recording format
(``frames[i]`` is the observation at time ``i``, step line ``t`` goes from frame ``t`` to
``t + 1``) that is ``prev_action[t] = steps[t - 1].action``.

Programmatic::

    from mtsandbox.agents.world_model import train_world_model, load_world_model
    model, hist = train_world_model(["runs/wm/data"], steps=500)   # dirs of recorded episodes
    model.save("runs/wm/model", env_id="MinetestSandbox/TreePunchShaped-v0")
    model, meta = load_world_model("runs/wm/model")
    pred = model.open_loop(frames, prev_actions, context=5)          # (H, 32, 32, 3) uint8

Checkpoint layout: ``<dir>/world_model.pt`` (``state_dict``) + ``<dir>/meta.json`` (format
``mtsandbox-world-model/2``, config, env_id, step, git commit, versions), meta written last.
Format 1 (64x64, plain convs, MSE reward head, no auxiliary heads) still loads.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from mtsandbox.agents.config import DictConfig
from mtsandbox.agents.devices import resolve_device
from mtsandbox.agents.provenance import write_meta

WM_FORMAT = "mtsandbox-world-model/2"
WM_FORMATS_READ = ("mtsandbox-world-model/1", WM_FORMAT)
V1_FIELDS = {"trunk_weight": 0.0, "reward_bins": 0, "aux_scale": 0.0, "norm": False}
"""Values of the fields added in format 2 that reproduce a format-1 model (read on load)."""
WM_FILE = "world_model.pt"
META_FILE = "meta.json"


class WorldModelError(RuntimeError):
    """A missing or unreadable world-model checkpoint (one-line message)."""




# ----------------------------------------------------------------------------- config

@dataclass
class WMConfig(DictConfig):
    """Sizes and loss weights of the world model (stored in meta.json)."""

    SOURCE: ClassVar[str] = "world-model config"

    n_actions: int = 12
    image_size: int = 32
    """Frames are area-averaged down to ``image_size`` (a power of two, 8..64) before the
    encoder, and the decoder draws them at that size: the model's observation."""
    channels: int = 16
    """Encoder conv widths are ``channels * (1, 2, 4, 8)`` (one stride-2 conv per halving down
    to 4x4); the decoder mirrors them."""
    embed: int = 256
    deter: int = 256
    """GRU (deterministic state) size."""
    n_cat: int = 16
    n_cls: int = 16
    """Stochastic latent: ``n_cat`` categoricals of ``n_cls`` classes (one-hot, flattened)."""
    hidden: int = 256
    unimix: float = 0.01
    free_bits: float = 1.0
    kl_dyn: float = 0.5
    kl_rep: float = 0.1
    recon_scale: float = 1.0
    trunk_weight: float = 5.0
    """Extra weight of the squared error on pixels whose *target* is trunk-coloured
    (:func:`trunk_mask`): a few percent of the view, which a plain pixel loss lets a blurry
    sky-and-grass frame ignore."""
    reward_scale: float = 1.0
    reward_bins: int = 255
    """Reward head: DreamerV3's two-hot over ``reward_bins`` bins in symlog space
    (-20..20), zero-initialised; 0 = a plain MSE head on raw rewards (format 1)."""
    cont_scale: float = 1.0
    aux_scale: float = 1.0
    """Auxiliary heads (0 = none): ``tree_in_view`` (trunk pixels >= 1% of the view) and
    ``trunk_centre`` (a trunk pixel in the central patch, where a punch lands), labels computed
    from the frame itself, so every recording source has them."""
    norm: bool = True
    """Channel LayerNorm after every conv (DreamerV3); False = format 1's plain convs."""
    trunk_map: float = 0.0
    """Weight of the trunk-map head (0 = none): a fourth decoder channel, the logit that each
    pixel is trunk-coloured (:func:`trunk_mask`), trained with per-pixel BCE summed over the
    view. The RGB mean of an uncertain (imagined) state is a blur whose colours fail the trunk
    test; a probability map says where the model puts the tree whatever the colours
    (:meth:`WorldModel.trunk_prob`). Checkpoints without the field have no head."""

    overshoot: int = 0
    """Open-loop decoding loss (0 = none; a departure from DreamerV3, after PlaNet's
    overshooting): from the posterior at one random step of each batch, imagine ``overshoot``
    steps with the actions taken and decode them against the frames that followed (the same
    trunk-weighted squared error, and the trunk map's BCE when it exists). DreamerV3's decoder
    only ever sees posterior states, so nothing asks an imagined state to still hold the tree
    that turned out of view; this does, which is what the state-tracking probe tests."""
    overshoot_scale: float = 1.0
    """Weight of the open-loop decoding loss against the one-step reconstruction loss."""
    copy_gate: bool = False
    """A compositing mask (a departure from DreamerV3, after the masks of Finn et al. 2016's
    video prediction): one more decoder channel, a per-pixel logit ``g``, and the predicted
    frame is ``sigmoid(g) * ref + (1 - sigmoid(g)) * rgb`` where ``ref`` is the last *real*
    frame before the predicted one (the previous frame for a reconstruction, the last observed
    frame for an open-loop prediction) and ``rgb`` the decoder's own drawing. Where nothing
    changes the model can copy sharp pixels instead of a blur of them; the state (and the
    trunk map, reward and auxiliary heads, which read only the state) is unchanged. Without a
    ``ref`` (an episode's first frame, or :meth:`WorldModel.decode` called without one) the
    drawing is used alone. Checkpoints without the field have no gate."""

    @property
    def stoch(self) -> int:
        return self.n_cat * self.n_cls

    @property
    def feat(self) -> int:
        return self.deter + self.stoch



# ----------------------------------------------------------------------------- labels

def trunk_mask(frames: np.ndarray | torch.Tensor) -> Any:
    """Trunk-coloured pixels (brown bark and the tan cut face): R > G + 5 and R > B + 10 on
    0..255 values. Leaves and grass are green-dominant, sky blue-dominant. ``frames``
    (..., H, W, 3) numpy or torch; returns a bool array of the same kind (..., H, W)."""
    f: Any = (frames.to(torch.int16) if torch.is_tensor(frames)
              else np.asarray(frames).astype(np.int16))
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (r > g + 5) & (r > b + 10)


def downsample(frames: np.ndarray, size: int) -> np.ndarray:
    """Area-average uint8 frames (..., H, W, 3) down to (..., size, size, 3) (H a multiple)."""
    frames = np.asarray(frames)
    h = frames.shape[-3]
    if h == size:
        return frames
    if h % size:
        raise ValueError(f"frames of {h}px cannot be area-averaged to {size}px")
    k = h // size
    lead = frames.shape[:-3]
    x = frames.reshape(*lead, size, k, size, k, 3).astype(np.float32).mean((-4, -2))
    return np.round(x).astype(np.uint8)


def aux_labels(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(..., 2) float labels from uint8 frames at model size: ``tree_in_view`` (trunk pixels
    >= 1% of the view), ``trunk_centre`` (a trunk pixel in the central eighth of the view)."""
    m = trunk_mask(frames if torch.is_tensor(frames) else torch.as_tensor(np.asarray(frames)))
    h = m.shape[-1]
    lo, hi = h // 2 - max(1, h // 16), h // 2 + max(1, h // 16)
    inview = m.float().mean((-1, -2)) >= 0.01
    centre = m[..., lo:hi, lo:hi].flatten(-2).any(-1)
    return torch.stack([inview, centre], -1).float()


AUX_NAMES = ("tree_in_view", "trunk_centre")


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def twohot(y: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """DreamerV3's two-hot encoding of ``symlog(y)`` over ``bins`` (..., n_bins)."""
    y = symlog(y).clamp(float(bins[0]), float(bins[-1]))
    hi = torch.searchsorted(bins, y.contiguous()).clamp(1, len(bins) - 1)
    lo = hi - 1
    w_hi = ((y - bins[lo]) / (bins[hi] - bins[lo])).clamp(0, 1)
    out = torch.zeros(*y.shape, len(bins), device=y.device)
    out.scatter_(-1, lo.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
    out.scatter_add_(-1, hi.unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


# ----------------------------------------------------------------------------- networks

class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a (N, C, H, W) map (DreamerV3's conv normalisation)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.movedim(1, -1)).movedim(-1, 1)


def _n_down(size: int) -> int:
    n = {8: 1, 16: 2, 32: 3, 64: 4}.get(size)
    if n is None:
        raise ValueError(f"world-model image_size must be 8, 16, 32 or 64, not {size}")
    return n


class ConvEncoder(nn.Module):
    def __init__(self, cfg: WMConfig) -> None:
        super().__init__()
        c = cfg.channels
        widths = [c * m for m in (1, 2, 4, 8)][:_n_down(cfg.image_size)]
        mods: list[nn.Module] = []
        d = 3
        for w in widths:
            mods += [nn.Conv2d(d, w, 4, 2, 1), *([ChannelNorm(w)] if cfg.norm else []),
                     nn.SiLU()]
            d = w
        self.convs = nn.Sequential(*mods)
        self.fc = nn.Linear(d * 4 * 4, cfg.embed)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img``: float (..., 3, H, W) in [-0.5, 0.5]."""
        lead = img.shape[:-3]
        x = self.convs(img.reshape(-1, *img.shape[-3:]))
        return F.silu(self.fc(x.flatten(1))).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    def __init__(self, cfg: WMConfig) -> None:
        super().__init__()
        c = cfg.channels
        widths = [c * m for m in (1, 2, 4, 8)][:_n_down(cfg.image_size)][::-1]
        self.s = 4
        self.c8 = widths[0]
        self.fc = nn.Linear(cfg.feat, widths[0] * self.s * self.s)
        mods: list[nn.Module] = [*([ChannelNorm(widths[0])] if cfg.norm else []), nn.SiLU()]
        for w_in, w_out in itertools.pairwise(widths):
            mods += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1),
                     *([ChannelNorm(w_out)] if cfg.norm else []), nn.SiLU()]
        mods.append(nn.ConvTranspose2d(widths[-1], n_out_channels(cfg), 4, 2, 1))
        self.deconvs = nn.Sequential(*mods)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """-> float (..., 3, H, W), predicted pixels in [-0.5, 0.5] (unclipped); with a
        trunk-map head (..., 4, H, W), channel 3 the trunk logit; with a copy gate one more
        channel, its logit (the last)."""
        lead = feat.shape[:-1]
        x = self.fc(feat.reshape(-1, feat.shape[-1])).reshape(-1, self.c8, self.s, self.s)
        x = self.deconvs(x)
        return x.reshape(*lead, *x.shape[-3:])


def n_out_channels(cfg: WMConfig) -> int:
    """Decoder output channels: RGB, the trunk-map logit if any, the copy-gate logit if any."""
    return 3 + int(cfg.trunk_map > 0) + int(bool(cfg.copy_gate))


def mlp(inp: int, hidden: int, out: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = inp
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        d = hidden
    mods.append(nn.Linear(d, out))
    return nn.Sequential(*mods)


@dataclass
class State:
    """RSSM state: ``deter`` (..., D), ``stoch`` (..., n_cat*n_cls) one-hot sample,
    ``logits`` (..., n_cat, n_cls)."""

    deter: torch.Tensor
    stoch: torch.Tensor
    logits: torch.Tensor

    def feat(self) -> torch.Tensor:
        return torch.cat([self.deter, self.stoch], -1)

    def detach(self) -> State:
        return State(self.deter.detach(), self.stoch.detach(), self.logits.detach())

    def map(self, fn) -> State:
        return State(fn(self.deter), fn(self.stoch), fn(self.logits))

    @staticmethod
    def stack(states: Sequence[State], dim: int = 1) -> State:
        return State(torch.stack([s.deter for s in states], dim),
                     torch.stack([s.stoch for s in states], dim),
                     torch.stack([s.logits for s in states], dim))


class RSSM(nn.Module):
    def __init__(self, cfg: WMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Sequential(nn.Linear(cfg.stoch + cfg.n_actions, cfg.hidden),
                                 nn.LayerNorm(cfg.hidden), nn.SiLU())
        self.gru = nn.GRUCell(cfg.hidden, cfg.deter)
        self.prior_net = mlp(cfg.deter, cfg.hidden, cfg.stoch, layers=1)
        self.post_net = mlp(cfg.deter + cfg.embed, cfg.hidden, cfg.stoch, layers=1)

    def initial(self, batch: int, device: torch.device) -> State:
        c = self.cfg
        return State(torch.zeros(batch, c.deter, device=device),
                     torch.zeros(batch, c.stoch, device=device),
                     torch.zeros(batch, c.n_cat, c.n_cls, device=device))

    def _dist_logits(self, raw: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        logits = raw.reshape(*raw.shape[:-1], c.n_cat, c.n_cls)
        if c.unimix > 0:
            probs = (1 - c.unimix) * logits.softmax(-1) + c.unimix / c.n_cls
            logits = probs.log()
        return logits

    def _sample(self, logits: torch.Tensor, sample: bool = True) -> torch.Tensor:
        probs = logits.softmax(-1)
        if sample:
            idx = torch.distributions.Categorical(logits=logits).sample()
        else:
            idx = probs.argmax(-1)
        onehot = F.one_hot(idx, self.cfg.n_cls).to(probs.dtype)
        onehot = onehot + probs - probs.detach()  # straight-through
        return onehot.flatten(-2)

    def img_step(self, state: State, action: torch.Tensor, sample: bool = True) -> State:
        """Prior: advance one step with one-hot ``action`` and no observation."""
        x = self.inp(torch.cat([state.stoch, action], -1))
        deter = self.gru(x, state.deter)
        logits = self._dist_logits(self.prior_net(deter))
        return State(deter, self._sample(logits, sample), logits)

    def obs_step(self, state: State, action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor | None = None, sample: bool = True
                 ) -> tuple[State, State]:
        """Posterior and prior for the next step. ``is_first`` (B,) zeroes the state/action."""
        if is_first is not None:
            keep = (1.0 - is_first.float()).unsqueeze(-1)
            state = State(state.deter * keep, state.stoch * keep,
                          state.logits * keep.unsqueeze(-1))
            action = action * keep
        prior = self.img_step(state, action, sample)
        logits = self._dist_logits(self.post_net(torch.cat([prior.deter, embed], -1)))
        post = State(prior.deter, self._sample(logits, sample), logits)
        return post, prior

    def kl(self, post_logits: torch.Tensor, prior_logits: torch.Tensor) -> torch.Tensor:
        """KL(post || prior) summed over the categoricals -> (...)."""
        lp, lq = post_logits.log_softmax(-1), prior_logits.log_softmax(-1)
        return (lp.exp() * (lp - lq)).sum((-1, -2))


# ----------------------------------------------------------------------------- data

STEP_LABELS = ("pending_presses", "overseer_in_view", "overseer_dist")
"""Step-line keys kept as :attr:`SeqData.labels` (and every ``<object>_in_view``)."""


@dataclass
class SeqData:
    """One episode in Dreamer alignment (length ``T = n_frames``).

    ``obs`` (T, H, W, 3) uint8; ``prev_action`` (T,) int64 (-1 at the first frame);
    ``reward`` (T,) float32 (0 at the first frame); ``cont`` (T,) float32 (0 on the frame where
    the episode terminated); ``is_first`` (T,) bool.
    """

    obs: np.ndarray
    prev_action: np.ndarray
    reward: np.ndarray
    cont: np.ndarray
    is_first: np.ndarray
    labels: dict[str, np.ndarray] | None = None
    """Per-frame task-state labels from a recording's step lines (:data:`STEP_LABELS`),
    float (T,), NaN where unknown (the first frame: the reset is not a step line)."""

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @classmethod
    def from_arrays(cls, frames: np.ndarray, actions: Sequence[int], rewards: Sequence[float],
                    terminated: bool = False) -> SeqData:
        """``frames`` (N+1, H, W, 3), ``actions``/``rewards`` (N,) as in a recording."""
        frames = np.asarray(frames, dtype=np.uint8)
        n = frames.shape[0]
        acts = np.asarray(list(actions)[: n - 1], dtype=np.int64)
        rews = np.asarray(list(rewards)[: n - 1], dtype=np.float32)
        prev = np.full(n, -1, np.int64)
        prev[1: 1 + len(acts)] = acts
        rew = np.zeros(n, np.float32)
        rew[1: 1 + len(rews)] = np.nan_to_num(rews)
        cont = np.ones(n, np.float32)
        if terminated:
            cont[-1] = 0.0
        first = np.zeros(n, bool)
        first[0] = True
        return cls(frames, prev, rew, cont, first)

    @classmethod
    def from_episode(cls, ep: Any) -> SeqData:
        """From a :class:`mtsandbox.tools.recording.Episode` (or its directory)."""
        from mtsandbox.tools.recording import Episode, load_episode
        from mtsandbox.tools.recording.format import VIEW_LABEL_SUFFIX

        if not isinstance(ep, Episode):
            ep = load_episode(ep)
        if ep.frames is None or ep.n_frames < 2:
            raise ValueError(f"episode {ep.path} has fewer than 2 frames")
        acts = [int(a) if a is not None else 0 for a in ep.actions]
        rews = ep.rewards
        term = bool(ep.steps and ep.steps[-1].get("terminated"))
        out = cls.from_arrays(np.asarray(ep.frames), acts, rews, term)
        keys = sorted({k for st in ep.steps for k in st
                       if k in STEP_LABELS or k.endswith(VIEW_LABEL_SUFFIX)} - {"tree_in_view"})
        if keys:
            n = len(out)
            out.labels = {}
            for k in keys:
                lab = np.full(n, np.nan)
                for i, st in enumerate(ep.steps[: n - 1]):  # step i's info is frame i + 1's
                    v = st.get(k)
                    if isinstance(v, (bool, int, float)):
                        lab[i + 1] = float(v)
                out.labels[k] = lab
        return out


class Replay:
    """Episodes of :class:`SeqData`; samples fixed-length chunks."""

    def __init__(self, episodes: Iterable[SeqData] = (), capacity_frames: int = 2_000_000,
                 seed: int = 0) -> None:
        self.episodes: list[SeqData] = []
        self.capacity = capacity_frames
        self.rng = np.random.default_rng(seed)
        for e in episodes:
            self.add(e)

    def add(self, ep: SeqData) -> None:
        if len(ep) < 2:
            return
        self.episodes.append(ep)
        while self.n_frames > self.capacity and len(self.episodes) > 1:
            self.episodes.pop(0)

    @property
    def n_frames(self) -> int:
        return sum(len(e) for e in self.episodes)

    def sample(self, batch: int, seq_len: int) -> dict[str, np.ndarray]:
        eps = [e for e in self.episodes if len(e) >= 2]
        if not eps:
            raise ValueError("replay is empty")
        lens = np.array([len(e) for e in eps], dtype=float)
        idx = self.rng.choice(len(eps), size=batch, p=lens / lens.sum())
        out: dict[str, list] = {k: [] for k in ("obs", "prev_action", "reward", "cont",
                                                "is_first")}
        for i in idx:
            e = eps[i]
            L = min(seq_len, len(e))
            s = int(self.rng.integers(0, len(e) - L + 1))
            sl = slice(s, s + L)
            chunk = {"obs": e.obs[sl], "prev_action": e.prev_action[sl], "reward": e.reward[sl],
                     "cont": e.cont[sl], "is_first": e.is_first[sl].copy()}
            chunk["is_first"][0] = True  # chunks start from a zero state
            if L < seq_len:  # short episode: pad by repeating the last entry, marked first
                pad = seq_len - L
                for k, v in chunk.items():
                    chunk[k] = np.concatenate([v, np.repeat(v[-1:], pad, 0)])
            for k in out:
                out[k].append(chunk[k])
        return {k: np.stack(v) for k, v in out.items()}


def as_seqdata(data: Any) -> list[SeqData]:
    """Episode dirs / recording roots / Episode objects / SeqData / dicts of arrays
    (``frames``, ``actions``, ``rewards``[, ``terminated``]) -> list of SeqData."""
    from mtsandbox.tools.recording import Episode, find_episodes

    if isinstance(data, (SeqData, Episode, dict, str, os.PathLike)):
        data = [data]
    out: list[SeqData] = []
    for d in data:
        if isinstance(d, SeqData):
            out.append(d)
        elif isinstance(d, Episode):
            out.append(SeqData.from_episode(d))
        elif isinstance(d, dict):
            out.append(SeqData.from_arrays(d["frames"], d["actions"], d["rewards"],
                                           bool(d.get("terminated", False))))
        else:
            for p in find_episodes(d):
                try:
                    out.append(SeqData.from_episode(p))
                except ValueError:
                    continue
    return out


# ----------------------------------------------------------------------------- model

class WorldModel(nn.Module):
    """Encoder + RSSM + decoder + reward and continue heads. See the module docstring."""

    bins: torch.Tensor  # the two-hot reward bins (a non-persistent buffer)

    def __init__(self, cfg: WMConfig | None = None, device: str | torch.device = "auto") -> None:
        super().__init__()
        self.cfg = cfg or WMConfig()
        self.encoder = ConvEncoder(self.cfg)
        self.rssm = RSSM(self.cfg)
        self.decoder = ConvDecoder(self.cfg)
        nb = self.cfg.reward_bins
        self.reward_head = mlp(self.cfg.feat, self.cfg.hidden, nb if nb > 0 else 1)
        if nb > 0:  # zero-initialised output: the first predictions are 0 (DreamerV3)
            out = cast(nn.Linear, self.reward_head[-1])
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        self.cont_head = mlp(self.cfg.feat, self.cfg.hidden, 1)
        self.aux_head = (mlp(self.cfg.feat, self.cfg.hidden, len(AUX_NAMES))
                         if self.cfg.aux_scale > 0 else None)
        self.register_buffer("bins", torch.linspace(-20.0, 20.0, max(nb, 2)), persistent=False)
        self.device = torch.device(resolve_device(device))
        self.to(self.device)
        self.train_steps = 0
        self.meta: dict[str, Any] = {}

    # -- conversions -----------------------------------------------------------------------
    def resize(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (..., H, W, 3) -> the model's observation size (area average)."""
        return downsample(frames, self.cfg.image_size)

    def preprocess(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (..., H, W, 3) -> float (..., 3, S, S) in [-0.5, 0.5] on the model device
        (area-averaged to ``image_size`` and rounded to uint8 levels, as :meth:`resize`)."""
        if not torch.is_tensor(obs):
            obs = np.asarray(obs)
            if not obs.flags.writeable:
                obs = np.array(obs)
        x = torch.as_tensor(obs, device=self.device).float().movedim(-1, -3)
        S = self.cfg.image_size
        if x.shape[-1] != S:
            lead = x.shape[:-3]
            x = F.avg_pool2d(x.reshape(-1, *x.shape[-3:]), x.shape[-1] // S).round()
            x = x.reshape(*lead, *x.shape[-3:])
        return x.div(255.0).sub(0.5)

    @staticmethod
    def to_uint8(img: torch.Tensor) -> np.ndarray:
        """float (..., 3, H, W) in [-0.5, 0.5] -> uint8 (..., H, W, 3)."""
        x = (img.detach().float().clamp(-0.5, 0.5) + 0.5).mul(255.0).round()
        return x.movedim(-3, -1).to(torch.uint8).cpu().numpy()

    def onehot(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """int actions (-1 = none) -> one-hot float (zeros for -1)."""
        a = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions,
                            device=self.device).long()
        oh = F.one_hot(a.clamp(min=0), self.cfg.n_actions).float()
        return oh * (a >= 0).unsqueeze(-1).float()

    # -- filtering / imagination -------------------------------------------------------------
    def observe(self, obs: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor,
                state: State | None = None, sample: bool = True) -> tuple[State, State]:
        """Posterior/prior states over a (B, T) sequence. ``obs`` preprocessed (B,T,3,H,W);
        ``prev_action`` one-hot (B,T,A); ``is_first`` (B,T)."""
        B, T = obs.shape[:2]
        embed = self.encoder(obs)
        if state is None:
            state = self.rssm.initial(B, self.device)
        posts, priors = [], []
        for t in range(T):
            post, prior = self.rssm.obs_step(state, prev_action[:, t], embed[:, t],
                                             is_first[:, t], sample)
            posts.append(post)
            priors.append(prior)
            state = post
        return State.stack(posts), State.stack(priors)

    def imagine(self, state: State, actions: torch.Tensor, sample: bool = True) -> State:
        """Prior rollout from ``state`` (B, ...) with one-hot ``actions`` (B, H, A) -> (B, H)."""
        out = []
        for t in range(actions.shape[1]):
            state = self.rssm.img_step(state, actions[:, t], sample)
            out.append(state)
        return State.stack(out)

    def decode(self, feat: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted pixels (..., 3, H, W) in [-0.5, 0.5] (unclipped). ``ref``: the last real
        frame before each predicted one, preprocessed (broadcastable to the output), which a
        copy-gated model composites with its drawing (:attr:`WMConfig.copy_gate`); ignored
        without a gate."""
        return self.compose(self.decoder(feat), ref)

    def compose(self, out: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """The RGB frame of decoder outputs ``out`` (..., C, H, W): the drawing itself, or with
        a copy gate and a ``ref`` frame the per-pixel blend of ``ref`` and the drawing. NaN in
        ``ref`` marks a frame with no real predecessor: the drawing is used there."""
        rgb = out[..., :3, :, :]
        if not self.cfg.copy_gate or ref is None:
            return rgb
        g = torch.sigmoid(out[..., -1:, :, :])
        missing = torch.isnan(ref)
        blend = g * torch.nan_to_num(ref) + (1.0 - g) * rgb  # no NaN reaches a gradient
        return torch.where(missing, rgb, blend)

    def gate(self, feat: torch.Tensor) -> torch.Tensor:
        """How much of each pixel a copy-gated model copies from the last real frame
        (..., H, W) in [0, 1]."""
        if not self.cfg.copy_gate:
            raise ValueError("this world model has no copy gate (copy_gate false)")
        return torch.sigmoid(self.decoder(feat)[..., -1, :, :])

    @property
    def has_trunk_map(self) -> bool:
        return self.cfg.trunk_map > 0

    def trunk_prob(self, feat: torch.Tensor) -> torch.Tensor:
        """Probability that each pixel is trunk (..., H, W) (the trunk-map head)."""
        if not self.has_trunk_map:
            raise ValueError("this world model has no trunk-map head (trunk_map 0)")
        return torch.sigmoid(self.decoder(feat)[..., 3, :, :])

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted reward (the two-hot head's expected value in symlog space, symexp'd)."""
        out = self.reward_head(feat)
        if self.cfg.reward_bins <= 0:
            return out.squeeze(-1)
        return symexp((out.softmax(-1) * self.bins).sum(-1))

    def aux(self, feat: torch.Tensor) -> torch.Tensor:
        """Probabilities of the auxiliary labels (..., len(AUX_NAMES))."""
        if self.aux_head is None:
            raise ValueError("this world model has no auxiliary heads (aux_scale 0)")
        return torch.sigmoid(self.aux_head(feat))

    def cont(self, feat: torch.Tensor) -> torch.Tensor:
        """Probability that the episode goes on."""
        return torch.sigmoid(self.cont_head(feat).squeeze(-1))

    # -- losses ------------------------------------------------------------------------------
    def batch_to_tensors(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        obs = self.preprocess(batch["obs"])
        return {
            "obs": obs,
            "trunk": trunk_mask(((obs + 0.5) * 255.0).round().movedim(-3, -1)),
            "prev_action": self.onehot(batch["prev_action"]),
            "reward": torch.as_tensor(batch["reward"], device=self.device).float(),
            "cont": torch.as_tensor(batch["cont"], device=self.device).float(),
            "is_first": torch.as_tensor(batch["is_first"], device=self.device),
        }

    def loss(self, batch: dict[str, np.ndarray] | dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float], State]:
        """Total loss, scalar metrics, and the (B, T) posterior states (for imagination)."""
        c = self.cfg
        tb: dict[str, torch.Tensor]
        if torch.is_tensor(batch["obs"]) and batch["obs"].dtype != torch.uint8:
            tb = cast(dict[str, torch.Tensor], batch)  # already a batch of tensors
        else:
            tb = self.batch_to_tensors(batch)  # type: ignore[arg-type]
        post, prior = self.observe(tb["obs"], tb["prev_action"], tb["is_first"])
        feat = post.feat()
        out = self.decoder(feat)
        prev = self._previous_frames(tb)
        recon = self.compose(out, prev)
        trunk = self._trunk_target(tb)
        mse_px = (recon - tb["obs"]).pow(2).mean()
        # sum over pixels (unit-variance Gaussian NLL), mean over batch and time
        recon_pf, map_pf = self._frame_losses(out, tb["obs"], trunk, prev)
        recon_loss = recon_pf.mean()
        map_loss = map_pf.mean() if map_pf is not None else torch.zeros((), device=self.device)
        if c.reward_bins > 0:
            logp = self.reward_head(feat).log_softmax(-1)
            rew_loss = -(twohot(tb["reward"], self.bins) * logp).sum(-1).mean()
        else:
            rew_loss = (self.reward(feat) - tb["reward"]).pow(2).mean()
        aux_loss = torch.zeros((), device=self.device)
        if self.aux_head is not None:
            labels = aux_labels(((tb["obs"] + 0.5) * 255.0).round().movedim(-3, -1))
            aux_loss = F.binary_cross_entropy_with_logits(self.aux_head(feat),
                                                          labels.to(feat.device))
        cont_loss = F.binary_cross_entropy_with_logits(self.cont_head(feat).squeeze(-1),
                                                       tb["cont"])
        over_loss = self._overshoot_loss(post, tb, trunk)
        kl_dyn = self.rssm.kl(post.logits.detach(), prior.logits)
        kl_rep = self.rssm.kl(post.logits, prior.logits.detach())
        kl_loss = (c.kl_dyn * kl_dyn.clamp(min=c.free_bits).mean()
                   + c.kl_rep * kl_rep.clamp(min=c.free_bits).mean())
        total = (c.recon_scale * recon_loss + c.reward_scale * rew_loss
                 + c.cont_scale * cont_loss + c.aux_scale * aux_loss + c.trunk_map * map_loss
                 + c.overshoot_scale * over_loss + kl_loss)
        metrics = {"loss": float(total.detach()), "recon": float(recon_loss.detach()),
                   "mse_px": float(mse_px.detach()), "aux": float(aux_loss.detach()),
                   "trunk_map": float(map_loss.detach()),
                   "reward": float(rew_loss.detach()), "cont": float(cont_loss.detach()),
                   "kl": float(kl_dyn.mean().detach())}
        if c.overshoot > 0:
            metrics["overshoot"] = float(over_loss.detach())
        return total, metrics, post

    def _previous_frames(self, tb: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Each frame's real predecessor (B, T, 3, H, W) for a copy gate, None without one.
        NaN where there is none (a window's first frame, an episode's first frame): there
        :meth:`compose` uses the drawing alone."""
        if not self.cfg.copy_gate:
            return None
        obs = tb["obs"]
        prev = torch.cat([torch.full_like(obs[:, :1], float("nan")), obs[:, :-1]], 1)
        return prev.masked_fill(tb["is_first"].bool()[..., None, None, None], float("nan"))

    def _trunk_target(self, tb: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's trunk masks (B, T, H, W) where a loss needs them, else None."""
        trunk = tb.get("trunk")
        if trunk is None and (self.cfg.trunk_weight > 0 or self.cfg.trunk_map > 0):
            trunk = trunk_mask(((tb["obs"] + 0.5) * 255.0).round().movedim(-3, -1))
        return trunk

    def _frame_losses(self, out: torch.Tensor, obs: torch.Tensor, trunk: torch.Tensor | None,
                      ref: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame pixel losses of decoder outputs ``out`` (..., C, H, W) against ``obs``:
        the squared error (of the frame :meth:`compose` makes with ``ref``) summed over
        pixels, trunk pixels weighted ``1 + trunk_weight``, and the trunk map's BCE summed over
        pixels (None without the head)."""
        c = self.cfg
        se = (self.compose(out, ref) - obs).pow(2)
        if c.trunk_weight > 0:
            assert trunk is not None
            se = se * (1.0 + c.trunk_weight * trunk.unsqueeze(-3).float())
        bce = None
        if c.trunk_map > 0:
            assert trunk is not None
            bce = F.binary_cross_entropy_with_logits(out[..., 3, :, :], trunk.float(),
                                                     reduction="none").sum((-1, -2))
        return se.sum((-1, -2, -3)), bce

    def _overshoot_loss(self, post: State, tb: dict[str, torch.Tensor],
                        trunk: torch.Tensor | None = None) -> torch.Tensor:
        """The open-loop decoding loss of :attr:`WMConfig.overshoot` (0 when off or the
        sequences are too short). Targets past an episode start in the window are left out."""
        c = self.cfg
        K = c.overshoot
        T = tb["obs"].shape[1]
        if K <= 0 or T < K + 1:
            return torch.zeros((), device=self.device)
        s = int(torch.randint(0, T - K, ()))        # imagine from step s to s+1..s+K
        tgt = slice(s + 1, s + K + 1)
        imag = self.imagine(post.map(lambda x: x[:, s]), tb["prev_action"][:, tgt],
                            sample=False)
        valid = (tb["is_first"][:, tgt].long().cumsum(1) == 0).float()          # (B, K)
        trunk = self._trunk_target(tb) if trunk is None else trunk
        ref = tb["obs"][:, s:s + 1] if c.copy_gate else None  # the last real frame
        per_step, bce = self._frame_losses(self.decoder(imag.feat()), tb["obs"][:, tgt],
                                           None if trunk is None else trunk[:, tgt], ref)
        if bce is not None:
            per_step = per_step + c.trunk_map * bce
        return (per_step * valid).sum() / valid.sum().clamp(min=1.0)

    # -- predictions for diagnostics ---------------------------------------------------------
    @torch.no_grad()
    def open_loop(self, frames: np.ndarray, prev_actions: np.ndarray, context: int,
                  horizon: int | None = None, sample: bool = False,
                  return_state: bool = False) -> Any:
        """Observe ``frames[:context]`` (with ``prev_actions[:context]``, -1 = episode start),
        then imagine with ``prev_actions[context:context+horizon]`` (the actions that lead to
        ``frames[context:]``) without looking at those frames.

        ``frames`` (T, H, W, 3) or (B, T, H, W, 3) uint8; ``prev_actions`` (T,) / (B, T).
        Returns predicted frames for times ``context .. context+horizon-1``: uint8
        (horizon, H, W, 3) (or with a leading B). Deterministic (mode latents) by default.
        """
        was_training = self.training
        self.eval()
        frames = np.asarray(frames)
        prev_actions = np.asarray(prev_actions)
        single = frames.ndim == 4
        if single:
            frames, prev_actions = frames[None], prev_actions[None]
        B, _T = frames.shape[:2]
        horizon = (prev_actions.shape[1] - context) if horizon is None else horizon
        obs = self.preprocess(frames[:, :context])
        first = torch.zeros(B, context, dtype=torch.bool, device=self.device)
        first[:, 0] = True
        pa = self.onehot(prev_actions[:, :context])
        post, _ = self.observe(obs, pa, first, sample=sample)
        last = post.map(lambda x: x[:, -1])
        acts = self.onehot(prev_actions[:, context:context + horizon])
        imag = self.imagine(last, acts, sample=sample)
        pred = self.to_uint8(self.decode(imag.feat(), obs[:, -1:]))  # ref: last observed
        self.train(was_training)
        if single:
            pred = pred[0]
        return (pred, imag) if return_state else pred

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, env_id: str | None = None,
             extra: dict[str, Any] | None = None) -> Path:
        """``path/world_model.pt`` + ``path/meta.json`` (written last, atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (WM_FILE + ".tmp")
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, tmp)
        tmp.replace(path / WM_FILE)
        write_meta(path, {
            "format": WM_FORMAT,
            "config": self.cfg.to_dict(),
            "env_id": env_id if env_id is not None else self.meta.get("env_id"),
            "step": int(self.train_steps),
            "n_params": sum(p.numel() for p in self.parameters()),
        }, extra, name=META_FILE)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto") -> WorldModel:
        return load_world_model(path, device)[0]


def load_world_model(path: str | os.PathLike, device: str | torch.device = "auto"
                     ) -> tuple[WorldModel, dict[str, Any]]:
    """``(model, meta)`` from a directory written by :meth:`WorldModel.save`."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    mp = path / META_FILE
    if not mp.exists():
        raise WorldModelError(f"not a world-model checkpoint (no {META_FILE}): {path}")
    try:
        meta = json.loads(mp.read_text())
    except ValueError as e:
        raise WorldModelError(f"corrupt {mp}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") not in WM_FORMATS_READ:
        raise WorldModelError(f"corrupt {mp}: not a {WM_FORMAT} meta")
    conf = dict(meta.get("config", {}))
    if meta["format"] != WM_FORMAT:  # format 1 predates these fields
        conf = {**V1_FIELDS, **conf}
    try:
        model = WorldModel(WMConfig.from_dict(conf), device=device)
    except (TypeError, ValueError) as e:
        raise WorldModelError(f"corrupt {mp}: {e}") from None
    try:
        sd = torch.load(path / WM_FILE, map_location=model.device, weights_only=True)
        model.load_state_dict(sd)
    except Exception as e:
        raise WorldModelError(f"corrupt {path / WM_FILE}: {type(e).__name__}: {e}") from None
    model.train_steps = int(meta.get("step", 0))
    model.meta = meta
    meta["path"] = str(path)
    return model, meta


def with_copy_gate(model: WorldModel, bias: float = -2.0) -> WorldModel:
    """A copy of a trained ``model`` with a copy gate (:attr:`WMConfig.copy_gate`) added, for
    further training: every weight carried over, the gate channel's weights zero and its bias
    ``bias`` (sigmoid(-2): 12% of each pixel copied at first), so it starts near the model it
    came from; its update count and meta too."""
    if model.cfg.copy_gate:
        raise ValueError("this world model already has a copy gate")
    new = WorldModel(WMConfig.from_dict({**model.cfg.to_dict(), "copy_gate": True}),
                     device=model.device)
    sd = new.state_dict()
    for k, v in model.state_dict().items():
        if sd[k].shape == v.shape:
            sd[k] = v.clone()
            continue
        # the decoder's last ConvTranspose2d: weight (in, out, kh, kw), bias (out,); the new
        # channel is the last one
        n = v.shape[1] if v.dim() == 4 else v.shape[0]
        t = torch.zeros_like(sd[k])
        if v.dim() == 4:
            t[:, :n] = v
        else:
            t[:n] = v
            t[n:] = bias
        sd[k] = t
    new.load_state_dict(sd)
    new.train_steps, new.meta = model.train_steps, dict(model.meta)
    return new


# ----------------------------------------------------------------------------- training

class WMTrainer:
    """Holds the optimiser so training can resume in chunks (used by the model-based agent)."""

    def __init__(self, model: WorldModel, lr: float = 3e-4, grad_clip: float = 100.0) -> None:
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-6)
        self.grad_clip = grad_clip

    def update(self, batch: dict[str, np.ndarray]) -> tuple[dict[str, float], State]:
        self.model.train()
        loss, metrics, post = self.model.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        self.model.train_steps += 1
        return metrics, post.detach()


def train_world_model(data: Any, steps: int = 500, *, model: WorldModel | None = None,
                      config: WMConfig | None = None, batch: int = 16, seq_len: int = 32,
                      lr: float = 3e-4, seed: int = 0, device: str = "auto",
                      log_every: int = 50, log=print, time_limit_s: float | None = None,
                      ) -> tuple[WorldModel, list[dict[str, float]]]:
    """Train (or continue training) a world model on recorded episodes.

    ``data``: recording roots / episode dirs / Episode objects / :class:`SeqData` /
    dicts ``{frames, actions, rewards[, terminated]}`` / a :class:`Replay`.
    ``config`` sets the sizes of a new model (``n_actions`` is taken from the data's largest
    action when left at the default and the data needs more). Returns ``(model, history)``:
    history holds the metrics averaged over each ``log_every`` steps (key ``step``).
    ``time_limit_s`` stops early after that much wall time.
    """
    torch.manual_seed(seed)
    replay = data if isinstance(data, Replay) else Replay(as_seqdata(data), seed=seed)
    if not replay.episodes:
        raise ValueError("train_world_model: no episodes with at least 2 frames in data")
    if model is None:
        cfg = config or WMConfig()
        amax = max(int(e.prev_action.max()) for e in replay.episodes)
        if amax >= cfg.n_actions:
            cfg = WMConfig.from_dict({**cfg.to_dict(), "n_actions": amax + 1})
        model = WorldModel(cfg, device=device)
    trainer = WMTrainer(model, lr=lr)
    hist: list[dict[str, float]] = []
    acc: dict[str, float] = {}
    n_acc = 0
    t0 = time.perf_counter()
    for i in range(steps):
        metrics, _ = trainer.update(replay.sample(batch, seq_len))
        for k, v in metrics.items():
            acc[k] = acc.get(k, 0.0) + v
        n_acc += 1
        last = i == steps - 1 or (time_limit_s is not None
                                  and time.perf_counter() - t0 > time_limit_s)
        if (i + 1) % max(1, log_every) == 0 or last:
            row = {k: v / n_acc for k, v in acc.items()}
            row["step"] = model.train_steps
            row["wall_s"] = time.perf_counter() - t0
            hist.append(row)
            if log is not None:
                log(f"wm step {model.train_steps}: loss {row['loss']:.1f} recon {row['recon']:.1f}"
                    f" mse/px {row['mse_px']:.5f} reward {row['reward']:.4f} kl {row['kl']:.2f}"
                    f" ({row['wall_s']:.0f}s)")
            acc, n_acc = {}, 0
        if last:
            break
    return model, hist


__all__ = [
    "RSSM",
    "Replay",
    "SeqData",
    "State",
    "WMConfig",
    "WMTrainer",
    "WorldModel",
    "WorldModelError",
    "as_seqdata",
    "load_world_model",
    "train_world_model",
]
