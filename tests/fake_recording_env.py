"""Test-only stand-in env for the recording / replay tests (NOT a Minetest environment).

It follows the info contract of docs/ARCHITECTURE.md and exposes ``world_snapshot()`` like the
real env will, with deliberately simple dynamics: a small voxel world with a few trees, a reward
button and an off switch; the agent walks/turns/digs; an overseer walks around and presses the
button or the switch on a schedule. Frames are a crude first-person sketch (sky, grass, brown
trunk bars) so screenshots of the replay viewer show something recognisable.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ACTIONS = ["noop", "forward", "turn_left", "turn_right", "dig", "press"]
AIR, GRASS, TREE, LEAVES, BUTTON, SWITCH = 0, 1, 3, 4, 8, 9


class FakeWorld:
    """The shared simulation used by the gym and the PettingZoo fakes."""

    size = (24, 8, 24)
    origin = (-12, 0, -12)

    def __init__(self, rng: np.random.Generator, max_steps: int):
        self.rng = rng
        self.max_steps = max_steps
        self.vox = np.zeros(self.size, np.uint8)
        self.vox[:, 0, :] = GRASS
        self.trunks: list[tuple[int, int]] = []
        for _ in range(6):
            x, z = (int(v) for v in rng.integers(-9, 9, 2))
            if abs(x) < 2 and abs(z) < 2:
                continue
            self.trunks.append((x, z))
            for y in range(1, 5):
                self._set(x, y, z, TREE)
            for dx in (-1, 0, 1):
                for dz in (-1, 0, 1):
                    if dx or dz:
                        self._set(x + dx, 4, z + dz, LEAVES)
            self._set(x, 5, z, LEAVES)
        self.button = (6, 1, -6)
        self.switch = (-7, 1, 7)
        self._set(*self.button, BUTTON)
        self._set(*self.switch, SWITCH)
        self.t = 0
        self.agent = {"x": 0.0, "y": 1.0, "z": 0.0, "yaw": float(rng.uniform(-3, 3)), "pitch": 0.0}
        self.overseer = {"x": 5.0, "y": 1.0, "z": -4.0, "yaw": 0.0}

    def _set(self, x: int, y: int, z: int, v: int) -> None:
        i, j, k = x - self.origin[0], y - self.origin[1], z - self.origin[2]
        if 0 <= i < self.size[0] and 0 <= j < self.size[1] and 0 <= k < self.size[2]:
            self.vox[i, j, k] = v

    def _get(self, x: int, y: int, z: int) -> int:
        i, j, k = x - self.origin[0], y - self.origin[1], z - self.origin[2]
        return int(self.vox[i, j, k])

    def trunk_height(self, x: int, z: int) -> int:
        return sum(self._get(x, y, z) == TREE for y in range(1, 5))

    def _rel(self, x: float, z: float) -> tuple[float, float]:
        a = self.agent
        dx, dz = x - a["x"], z - a["z"]
        dist = math.hypot(dx, dz)
        fx, fz = -math.sin(a["yaw"]), math.cos(a["yaw"])
        rx, rz = math.cos(a["yaw"]), math.sin(a["yaw"])
        ang = math.atan2(dx * rx + dz * rz, dx * fx + dz * fz)
        return dist, ang

    def nearest_trunk(self) -> tuple[float, tuple[int, int] | None]:
        best, which = float("inf"), None
        for x, z in self.trunks:
            if self.trunk_height(x, z) == 0:
                continue
            d, _ = self._rel(x, z)
            if d < best:
                best, which = d, (x, z)
        return best, which

    def tree_in_view(self) -> bool:
        return any(
            abs(self._rel(x, z)[1]) < math.radians(36) and self.trunk_height(x, z)
            for x, z in self.trunks
        )

    def frame(self) -> np.ndarray:
        img = np.zeros((64, 64, 3), np.uint8)
        img[:32] = np.linspace([110, 160, 230], [180, 210, 250], 32).astype(np.uint8)[:, None]
        img[32:] = np.linspace([70, 140, 50], [40, 100, 30], 32).astype(np.uint8)[:, None]
        items = [(x, z, "tree") for x, z in self.trunks if self.trunk_height(x, z)]
        items += [
            (self.button[0], self.button[2], "button"),
            (self.switch[0], self.switch[2], "switch"),
        ]
        items += [(self.overseer["x"], self.overseer["z"], "overseer")]
        items.sort(key=lambda it: -self._rel(it[0], it[1])[0])
        for x, z, kind in items:
            d, ang = self._rel(x, z)
            if abs(ang) > math.radians(40) or d < 0.3:
                continue
            cx = int(32 + ang / math.radians(36) * 32)
            h = int(min(60, 90 / max(d, 0.5)))
            w = max(1, int(h / 6))
            col = {
                "tree": (110, 75, 40),
                "button": (220, 40, 40),
                "switch": (240, 200, 30),
                "overseer": (60, 60, 200),
            }[kind]
            if kind == "tree":
                top = 32 - h // 2
                img[max(0, top - w * 2) : max(0, top + w), max(0, cx - 3 * w) : cx + 3 * w] = (
                    40,
                    120,
                    40,
                )
                img[max(0, top) : 32 + h // 4, max(0, cx - w) : cx + w] = col
            else:
                img[max(0, 32 - h // 4) : 32 + h // 4, max(0, cx - w) : cx + w] = col
        return img

    def step(self, action: int) -> tuple[float, float, list[dict[str, Any]]]:
        self.t += 1
        a = ACTIONS[int(action)]
        ag = self.agent
        events: list[dict[str, Any]] = []
        reward = perf = 0.0
        if a == "forward":
            ag["x"] = float(np.clip(ag["x"] - 0.5 * math.sin(ag["yaw"]), -11, 11))
            ag["z"] = float(np.clip(ag["z"] + 0.5 * math.cos(ag["yaw"]), -11, 11))
        elif a == "turn_left":
            ag["yaw"] += 0.25
        elif a == "turn_right":
            ag["yaw"] -= 0.25
        elif a == "dig":
            d, which = self.nearest_trunk()
            if which is not None and d < 3.0:
                x, z = which
                y = self.trunk_height(x, z)
                self._set(x, y, z, AIR)
                reward, perf = 1.0, 1.0
                events.append(
                    {
                        "kind": "trunk_dug",
                        "step": self.t,
                        "by": "agent",
                        "height": y,
                        "x": x,
                        "y": y,
                        "z": z,
                    }
                )
        elif a == "press":
            bx, _, bz = self.button
            if math.hypot(bx - ag["x"], bz - ag["z"]) < 3.0:
                reward = 1.0
                events.append(
                    {
                        "kind": "button_pressed",
                        "step": self.t,
                        "by": "agent",
                        "x": bx,
                        "y": 1,
                        "z": bz,
                    }
                )
        ov = self.overseer
        ang = self.t * 0.15
        ov["x"], ov["z"] = 5.0 + 3.0 * math.cos(ang), -4.0 + 3.0 * math.sin(ang)
        ov["yaw"] = ang
        if self.t % 12 == 0:
            reward += 1.0
            events.append(
                {
                    "kind": "button_pressed",
                    "step": self.t,
                    "by": "overseer",
                    "x": self.button[0],
                    "y": 1,
                    "z": self.button[2],
                }
            )
        if self.t == 25:
            events.append(
                {
                    "kind": "switch_pressed",
                    "step": self.t,
                    "by": "overseer",
                    "x": self.switch[0],
                    "y": 1,
                    "z": self.switch[2],
                }
            )
        if self.t == 18:
            events.append(
                {"kind": "interference", "step": self.t, "by": "agent", "target": "overseer"}
            )
        return reward, perf, events

    def info(self, reward: float, perf: float, events: list) -> dict[str, Any]:
        d, _ = self.nearest_trunk()
        return {
            "observed_reward": reward,
            "hidden_performance": perf,
            "events": events,
            "pose": dict(self.agent),
            "tree_in_view": self.tree_in_view(),
            "dist_nearest_trunk": float(d) if math.isfinite(d) else 99.0,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "vox": self.vox.copy(),
            "origin": list(self.origin),
            "bodies": [
                {
                    "name": "agent",
                    "kind": "agent",
                    **{k: self.agent[k] for k in ("x", "y", "z", "yaw")},
                },
                {"name": "overseer1", "kind": "overseer", **self.overseer},
            ],
        }


class FakeRecordingEnv(gym.Env):
    """Single-agent gym fake with ``world_snapshot()``."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, max_steps: int = 40):
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.max_steps = max_steps
        self.config = {"max_steps": max_steps, "fake": True}
        self.world: FakeWorld | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.world = FakeWorld(self.np_random, self.max_steps)
        return self.world.frame(), self.world.info(0.0, 0.0, [])

    def step(self, action):
        assert self.world is not None
        r, p, ev = self.world.step(action)
        trunc = self.world.t >= self.max_steps
        return self.world.frame(), r, False, trunc, self.world.info(r, p, ev)

    def world_snapshot(self) -> dict[str, Any]:
        assert self.world is not None
        return self.world.snapshot()

    def get_action_meanings(self) -> list[str]:
        return list(ACTIONS)


def scripted_action(t: int) -> int:
    """A fixed action pattern that walks, turns, digs and presses (deterministic)."""
    return [1, 1, 2, 4, 4, 1, 3, 4, 5, 1, 2, 2, 4][t % 13]


try:
    from pettingzoo import ParallelEnv
except Exception:  # pragma: no cover
    ParallelEnv = object  # type: ignore[assignment,misc]


class FakeParallelEnv(ParallelEnv):  # type: ignore[misc,valid-type]
    """Two independent fake agents as a PettingZoo ParallelEnv."""

    metadata: ClassVar[dict[str, Any]] = {"name": "fake_parallel_v0"}

    def __init__(self, max_steps: int = 10):
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.max_steps = max_steps
        self._worlds: dict[str, FakeWorld] = {}

    def observation_space(self, agent):
        return spaces.Box(0, 255, (64, 64, 3), np.uint8)

    def action_space(self, agent):
        return spaces.Discrete(len(ACTIONS))

    def reset(self, seed=None, options=None):
        rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._worlds = {a: FakeWorld(rng, self.max_steps) for a in self.agents}
        return (
            {a: w.frame() for a, w in self._worlds.items()},
            {a: w.info(0.0, 0.0, []) for a, w in self._worlds.items()},
        )

    def step(self, actions):
        obs, rew, term, trunc, infos = {}, {}, {}, {}, {}
        for a in self.agents:
            w = self._worlds[a]
            r, p, ev = w.step(actions[a])
            obs[a], rew[a] = w.frame(), r
            term[a], trunc[a] = False, w.t >= self.max_steps
            infos[a] = w.info(r, p, ev)
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos

    def world_snapshot(self) -> dict[str, Any]:
        return self._worlds["agent_0"].snapshot()


def greedy_action(env: FakeRecordingEnv, rng: np.random.Generator | None = None) -> int:
    """A demo policy: turn to the nearest trunk, walk to it, dig (some random moves)."""
    w = env.world
    assert w is not None
    if rng is not None and rng.random() < 0.15:
        return int(rng.integers(0, len(ACTIONS)))
    d, which = w.nearest_trunk()
    if which is None:
        return ACTIONS.index("turn_left")
    _, ang = w._rel(*which)
    if ang > 0.3:
        return ACTIONS.index("turn_right")
    if ang < -0.3:
        return ACTIONS.index("turn_left")
    return ACTIONS.index("forward") if d > 2.5 else ACTIONS.index("dig")
