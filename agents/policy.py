"""The sandbox's policy network (see docs/ARCHITECTURE.md, "Policy contract").

SB3 ``ActorCriticPolicy`` with ``features_extractor_class=MinetestCNN`` and ``net_arch=[]``;
SB3 adds ``action_net`` (logits) and ``value_net`` (value) on top of the 512-d features.

``MinetestCNN`` layout (Nature-DQN sized), every layer followed by ReLU and then an identity
:class:`HookPoint` so interpretability code can hook activations by name::

    conv1 (8x8 s4, 32) -> relu1 -> hook_conv1
    conv2 (4x4 s2, 64) -> relu2 -> hook_conv2
    conv3 (3x3 s1, 64) -> relu3 -> hook_conv3
    flatten -> fc (-> 512) -> relu_fc -> hook_fc

Inputs: image observations with any number of channels (RGB = 3, grayscale = 1, frame stacks of
either = 3k / k channels via ``VecFrameStack(channels_order="last")``). SB3 transposes
channel-last image spaces to channel-first (``VecTransposeImage``) and divides uint8 by 255
before the extractor; when the extractor is given a channel-last observation space, or is
called directly on raw ``uint8`` tensors, it does the transpose / scaling itself.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

HOOK_NAMES = ("hook_conv1", "hook_conv2", "hook_conv3", "hook_fc")


class HookPoint(nn.Identity):
    """Identity module marking an activation site (``register_forward_hook`` on it)."""


class MinetestCNN(BaseFeaturesExtractor):
    """conv1 8x8/4 32ch, conv2 4x4/2 64ch, conv3 3x3/1 64ch, fc -> ``features_dim``; ReLU and a
    :class:`HookPoint` after each."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 512) -> None:
        super().__init__(observation_space, features_dim)
        shape = observation_space.shape
        if shape is None or len(shape) != 3:
            raise ValueError(f"MinetestCNN needs an image observation space (3 dims), got {shape}")
        # True when the space is (H, W, C); SB3 normally hands us (C, H, W).
        self.channels_last = not is_image_space_channels_first(observation_space)
        n_channels = shape[2] if self.channels_last else shape[0]

        self.conv1 = nn.Conv2d(n_channels, 32, kernel_size=8, stride=4)
        self.relu1 = nn.ReLU()
        self.hook_conv1 = HookPoint()
        self.conv2 = nn.Conv2d(32, 64, kernel_size=4, stride=2)
        self.relu2 = nn.ReLU()
        self.hook_conv2 = HookPoint()
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3, stride=1)
        self.relu3 = nn.ReLU()
        self.hook_conv3 = HookPoint()
        self.flatten = nn.Flatten()

        with torch.no_grad():
            sample = torch.as_tensor(observation_space.sample()[None]).float()
            n_flat = self._conv(self._to_nchw(sample)).shape[1]
        self.fc = nn.Linear(n_flat, features_dim)
        self.relu_fc = nn.ReLU()
        self.hook_fc = HookPoint()

    def _to_nchw(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dtype == torch.uint8:  # raw pixels (SB3's preprocessing already scales floats)
            obs = obs.float() / 255.0
        if self.channels_last:
            obs = obs.permute(0, 3, 1, 2)
        return obs

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_conv1(self.relu1(self.conv1(x)))
        x = self.hook_conv2(self.relu2(self.conv2(x)))
        x = self.hook_conv3(self.relu3(self.conv3(x)))
        return self.flatten(x)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self._conv(self._to_nchw(observations))
        return self.hook_fc(self.relu_fc(self.fc(x)))


def make_policy_kwargs(features_dim: int = 512) -> dict[str, Any]:
    """``policy_kwargs`` for ``PPO("CnnPolicy", env, policy_kwargs=make_policy_kwargs())``."""
    return {
        "features_extractor_class": MinetestCNN,
        "features_extractor_kwargs": {"features_dim": features_dim},
        "net_arch": [],
        "normalize_images": True,
    }
