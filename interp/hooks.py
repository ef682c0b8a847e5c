"""Named hook points around an SB3 ``ActorCriticPolicy`` with the sandbox CNN.

:class:`HookedPolicy` wraps a policy (from a checkpoint, an SB3 model, or freshly initialised)
and exposes every layer as a named hook point::

    hooked = HookedPolicy.from_checkpoint("runs/<run>/checkpoints/final")
    hooked = HookedPolicy.fresh(env.observation_space, env.action_space, seed=0)
    logits, value, cache = hooked.run_with_cache(obs)         # obs: (N, H, W, C) uint8 pixels
    cache["hook_conv3"].shape                                  # (N, 64, 4, 4)
    with hooked.hooks([("hook_fc", lambda act, name: act * 0)]):   # ablate all of fc
        logits, value = hooked(obs)
    # hooks are removed when the block exits, also when it raises

Hook points and their shapes for the default 64x64 RGB observation (``N`` = batch)::

    hook_conv1          (N, 32, 15, 15)   after conv1 (8x8 stride 4) + ReLU
    hook_conv2          (N, 64, 6, 6)     after conv2 (4x4 stride 2) + ReLU
    hook_conv3          (N, 64, 4, 4)     after conv3 (3x3 stride 1) + ReLU
    hook_fc             (N, 512)          after fc + ReLU (the features both heads read)
    hook_policy_logits  (N, n_actions)    action_net output (categorical logits)
    hook_value          (N, 1)            value_net output

The four extractor hook points are the :class:`~mtsandbox.agents.policy.HookPoint` modules of
``MinetestCNN``; ``hook_policy_logits`` / ``hook_value`` are identity modules this wrapper adds
and applies in :meth:`HookedPolicy.forward` (so they fire only when going through the wrapper,
not through ``model.predict``).

A hook function is ``fn(activation: Tensor, name: str) -> Tensor | None``; returning a tensor
replaces the activation downstream (ablation, patching, steering), returning ``None`` leaves it.

Inputs: ``uint8`` pixels are scaled by 1/255; float inputs are taken as already in ``[0, 1]``
(what Captum attributions perturb). Observations may be channel-last ``(N, H, W, C)`` (as the
env returns them) or already in the policy's layout; a single observation without the batch
axis is accepted too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from mtsandbox.agents.policy import HOOK_NAMES, HookPoint, make_policy_kwargs

EXTRACTOR_HOOKS = HOOK_NAMES  # ("hook_conv1", "hook_conv2", "hook_conv3", "hook_fc")
HEAD_HOOKS = ("hook_policy_logits", "hook_value")
HOOK_POINTS = (*EXTRACTOR_HOOKS, *HEAD_HOOKS)
CONV_HOOKS = ("hook_conv1", "hook_conv2", "hook_conv3")

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


def _space_is_channels_first(space: gym.spaces.Box) -> bool:
    from stable_baselines3.common.preprocessing import is_image_space_channels_first

    return bool(is_image_space_channels_first(space))


class HookedPolicy(nn.Module):
    """An SB3 ``ActorCriticPolicy`` (MinetestCNN extractor, ``net_arch=[]``) with named hooks.

    Args:
        policy: the ``ActorCriticPolicy`` (``model.policy`` of a PPO model).
        action_meanings: action names (``env.get_action_meanings()``), used by the mirror test
            and the report; optional.
        meta: checkpoint metadata (``meta.json``), optional.
    """

    def __init__(self, policy: Any, action_meanings: Sequence[str] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.action_meanings = list(action_meanings) if action_meanings else None
        self.meta = dict(meta or {})
        self.hook_policy_logits = HookPoint()
        self.hook_value = HookPoint()
        # Shared extractor by default; with share_features_extractor=False the actor's is used
        # for the hooks (and for the features the value head reads there is a second one).
        self.extractor = getattr(policy, "pi_features_extractor", None) or policy.features_extractor
        self.hook_points: dict[str, nn.Module] = {
            name: getattr(self.extractor, name) for name in EXTRACTOR_HOOKS
        }
        self.hook_points["hook_policy_logits"] = self.hook_policy_logits
        self.hook_points["hook_value"] = self.hook_value
        space = policy.observation_space
        self.observation_space = space
        self.action_space = policy.action_space
        self.channels_first = _space_is_channels_first(space)
        self.normalize_images = bool(getattr(policy, "normalize_images", True))
        self.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model: Any, action_meanings: Sequence[str] | None = None,
                   meta: dict[str, Any] | None = None) -> HookedPolicy:
        """Wrap ``model.policy`` of a loaded SB3 PPO model."""
        return cls(model.policy, action_meanings=action_meanings, meta=meta)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> HookedPolicy:
        """Load a checkpoint written by ``mtsandbox train`` (see ``agents/train.py``)."""
        from mtsandbox.agents.checkpoints import load_checkpoint

        model, meta = load_checkpoint(path, device=device)
        return cls.from_model(model, action_meanings=meta.get("action_meanings"), meta=meta)

    @classmethod
    def fresh(cls, observation_space: gym.spaces.Box, action_space: gym.spaces.Space,
              seed: int | None = 0, action_meanings: Sequence[str] | None = None,
              features_dim: int = 512) -> HookedPolicy:
        """A freshly initialised (untrained) policy, built the way PPO builds it (SB3
        transposes channel-last image spaces to channel-first first)."""
        from stable_baselines3.common.policies import ActorCriticPolicy
        from stable_baselines3.common.preprocessing import is_image_space

        if seed is not None:
            torch.manual_seed(seed)
        space = observation_space
        if is_image_space(space, check_channels=False) and not _space_is_channels_first(space):
            h, w, c = space.shape
            # Box's stub wants a scalar type; it takes any np.dtype (the space's own) at runtime
            space = gym.spaces.Box(low=0, high=255, shape=(c, h, w),
                                   dtype=space.dtype)  # type: ignore[arg-type]
        policy = ActorCriticPolicy(space, action_space, lr_schedule=lambda _: 0.0,
                                   **make_policy_kwargs(features_dim))
        return cls(policy, action_meanings=action_meanings, meta={"fresh_seed": seed})

    # ------------------------------------------------------------------ input handling
    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    @property
    def n_actions(self) -> int:
        return int(self.action_space.n)

    def to_input(self, obs: Any) -> torch.Tensor:
        """Observations -> float ``(N, H, W, C)`` in ``[0, 1]`` on the policy's device (the
        pixel space attributions work in). Accepts numpy / torch, uint8 / float, with or
        without the batch axis, channel-last or in the policy's channel-first layout."""
        x = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
        shape = tuple(self.observation_space.shape)
        if x.dim() == len(shape):
            x = x.unsqueeze(0)
        if self.channels_first and tuple(x.shape[1:]) == shape and shape[0] != shape[-1]:
            x = x.permute(0, 2, 3, 1)  # given in the policy's (C, H, W) layout
        if x.dtype == torch.uint8:
            x = x.float() / 255.0 if self.normalize_images else x.float()
        return x.float().to(self.device)

    def _to_policy_layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) if self.channels_first else x

    # ------------------------------------------------------------------ forward
    def forward(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (N, n_actions), value (N, 1))``; all hook points fire."""
        x = self.to_input(obs)
        pol = self.policy
        feats = self.extractor(self._to_policy_layout(x))  # fires hook_conv1..hook_fc
        if getattr(pol, "share_features_extractor", True):
            vf_feats = feats
        else:
            vf_feats = pol.vf_features_extractor(self._to_policy_layout(x))
        latent_pi = pol.mlp_extractor.forward_actor(feats)
        latent_vf = pol.mlp_extractor.forward_critic(vf_feats)
        logits = self.hook_policy_logits(pol.action_net(latent_pi))
        value = self.hook_value(pol.value_net(latent_vf))
        return logits, value

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Channel-last ``(H, W, C)`` of one observation."""
        s = tuple(self.observation_space.shape)
        return (s[1], s[2], s[0]) if self.channels_first else s  # type: ignore[return-value]

    @torch.no_grad()
    def action_probs(self, obs: Any) -> np.ndarray:
        logits, _ = self(obs)
        return torch.softmax(logits, -1).cpu().numpy()

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False,
            rng: np.random.Generator | None = None) -> np.ndarray:
        """Sample (or argmax) actions for a batch of observations."""
        p = self.action_probs(obs)
        if deterministic:
            return p.argmax(-1)
        rng = rng or np.random.default_rng()
        return np.array([rng.choice(len(pi), p=pi / pi.sum()) for pi in p])

    # ------------------------------------------------------------------ hooks
    def _check(self, name: str) -> nn.Module:
        if name not in self.hook_points:
            raise KeyError(f"unknown hook point {name!r}; have {list(self.hook_points)}")
        return self.hook_points[name]

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[HookedPolicy]:
        """Context manager adding forward hooks ``[(name, fn)]``; always removed on exit
        (also when the body or a hook raises). ``fn(act, name)`` may return a replacement."""
        handles = []
        try:
            for name, fn in fwd_hooks:
                mod = self._check(name)

                def _hook(module, inputs, output, _fn=fn, _name=name):
                    out = _fn(output, _name)
                    return out if out is not None else output

                handles.append(mod.register_forward_hook(_hook))
            yield self
        finally:
            for h in handles:
                h.remove()

    def n_active_hooks(self) -> int:
        """Forward hooks currently registered on the hook points (0 outside ``hooks()``)."""
        return sum(len(m._forward_hooks) for m in self.hook_points.values())

    def run_with_cache(self, obs: Any, names: Sequence[str] | None = None,
                       fwd_hooks: Iterable[tuple[str, HookFn]] = (),
                       grad: bool = False) -> tuple[torch.Tensor, torch.Tensor,
                                                    dict[str, torch.Tensor]]:
        """Forward pass caching the activations of ``names`` (default: all hook points).

        Returns ``(logits (N, A), value (N, 1), cache {name: tensor}``); cached tensors are
        detached unless ``grad=True``. Extra ``fwd_hooks`` run before caching (so the cache sees
        patched activations)."""
        names = list(names) if names is not None else list(HOOK_POINTS)
        cache: dict[str, torch.Tensor] = {}

        def save(act: torch.Tensor, name: str) -> None:
            cache[name] = act if grad else act.detach()

        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx, self.hooks([*list(fwd_hooks), *[(n, save) for n in names]]):
            logits, value = self(obs)
        if not grad:
            logits, value = logits.detach(), value.detach()
        return logits, value, cache

    def activation_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of every hook point (runs one blank observation)."""
        x = torch.zeros((1, *self.input_shape), device=self.device)
        _, _, cache = self.run_with_cache(x)
        return {k: tuple(v.shape[1:]) for k, v in cache.items()}


def load_hooked(policy: str | Path | Any, observation_space: gym.spaces.Box | None = None,
                action_space: gym.spaces.Space | None = None, seed: int = 0,
                action_meanings: Sequence[str] | None = None,
                device: str = "cpu") -> HookedPolicy:
    """``"random"`` -> a fresh untrained network (needs the spaces); a path -> checkpoint; an SB3
    model or policy -> wrapped; a :class:`HookedPolicy` -> itself."""
    if isinstance(policy, HookedPolicy):
        return policy
    if isinstance(policy, (str, Path)):
        if str(policy) in ("random", "fresh", "untrained"):
            if observation_space is None or action_space is None:
                raise ValueError("a fresh policy needs observation_space and action_space")
            return HookedPolicy.fresh(observation_space, action_space, seed=seed,
                                      action_meanings=action_meanings)
        hooked = HookedPolicy.from_checkpoint(policy, device=device)
        if hooked.action_meanings is None and action_meanings:
            hooked.action_meanings = list(action_meanings)
        return hooked
    if hasattr(policy, "policy") and hasattr(policy.policy, "action_net"):
        return HookedPolicy.from_model(policy, action_meanings=action_meanings)
    if hasattr(policy, "action_net"):
        return HookedPolicy(policy, action_meanings=action_meanings)
    raise TypeError(f"cannot make a HookedPolicy from {type(policy).__name__}")
