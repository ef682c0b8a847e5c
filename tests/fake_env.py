"""A tiny in-process stand-in with the *spaces and info keys* of the TreePunch envs.

For unit tests of the training/evaluation plumbing only. It is not a Minetest environment and
must never be used (or reported) as one: observations are noise with a coloured square, and
"trunks" are dug by a coin flip when the agent picks the ``dig`` action near a fake tree.

Register it under a test id with :func:`register_fake_envs` (ids ``FakeSandbox/...``, never the
real ``MinetestSandbox/...`` ids).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FAKE_ID = "FakeSandbox/FakeTreePunch-v0"
FAKE_SHAPED_ID = "FakeSandbox/FakeTreePunchShaped-v0"

ACTION_MEANINGS = ["noop", "forward", "back", "left", "right", "turn_left", "turn_right", "dig"]


class FakeTreePunchEnv(gym.Env):
    """Same observation/action spaces and info keys as the real env; trivial dynamics."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, max_steps: int = 500, shaped: bool = False, render_mode: str | None = None,
                 crash_at_step: int | None = None):
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))
        self.max_steps = int(max_steps)
        self.shaped = bool(shaped)
        self.render_mode = render_mode
        self._t = 0
        self._yaw = 0.0
        self._obs = np.zeros((64, 64, 3), np.uint8)
        self.closed = False
        self.crash_at_step = crash_at_step  # raise RuntimeError at this step (tests cleanup)
        self._total_steps = 0

    def get_action_meanings(self) -> list[str]:
        return list(ACTION_MEANINGS)

    def _tree_in_view(self) -> bool:
        return bool(np.cos(self._yaw) > 0.5)

    def _make_obs(self) -> np.ndarray:
        obs = self.np_random.integers(0, 40, (64, 64, 3), dtype=np.uint8)
        if self._tree_in_view():
            obs[20:44, 28:36] = (120, 80, 40)  # a brown "trunk"
        return obs

    def _info(self, reward: float, perf: float, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "observed_reward": float(reward),
            "hidden_performance": float(perf),
            "events": events,
            "pose": {"x": 0.0, "y": 0.0, "z": 0.0, "yaw": float(self._yaw), "pitch": 0.0},
            "tree_in_view": self._tree_in_view(),
            "dist_nearest_trunk": 2.0,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._yaw = float(self.np_random.uniform(-np.pi, np.pi))
        self._obs = self._make_obs()
        return self._obs, self._info(0.0, 0.0, [])

    def step(self, action):
        a = ACTION_MEANINGS[int(action)]
        self._t += 1
        self._total_steps += 1
        if self.crash_at_step is not None and self._total_steps >= self.crash_at_step:
            raise RuntimeError("fake env crash (requested by crash_at_step)")
        if a == "turn_left":
            self._yaw += 0.3
        elif a == "turn_right":
            self._yaw -= 0.3
        events: list[dict[str, Any]] = []
        perf = 0.0
        reward = 0.0
        if a == "dig" and self._tree_in_view() and self.np_random.random() < 0.5:
            perf = 1.0
            reward = 1.0
            events.append({"kind": "trunk_dug", "step": self._t, "height": 0, "by": "agent"})
        elif self.shaped and self._tree_in_view():
            reward = 0.01
        if self.np_random.random() < 0.05:
            events.append({"kind": "button_pressed", "step": self._t, "by": "overseer"})
        self._obs = self._make_obs()
        truncated = self._t >= self.max_steps
        return self._obs, reward, False, truncated, self._info(reward, perf, events)

    def render(self):
        return self._obs

    def close(self):
        self.closed = True


def register_fake_envs() -> None:
    """Register the fake envs under test-only ids (idempotent)."""
    for env_id, shaped in ((FAKE_ID, False), (FAKE_SHAPED_ID, True)):
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=FakeTreePunchEnv,
                kwargs={"shaped": shaped},
                disable_env_checker=True,
            )


# Registering on import lets subprocess workers build the env from the id
# "fake_env:FakeSandbox/FakeTreePunch-v0" (gymnasium imports the module first).
register_fake_envs()
