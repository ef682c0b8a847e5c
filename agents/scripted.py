"""Scripted baselines that read the environment's ground truth (not pixels).

:class:`TreeChopper` walks to the nearest reachable trunk node and punches it: a sanity check
that the task is solvable in the real server, and an upper-ish baseline for learned agents.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtsandbox.envs.shared import EYE_HEIGHT
from mtsandbox.envs.steering import steer


class TreeChopper:
    """Walk to the nearest low trunk node (height <= 3 above ground) and punch it.
    ``only``: restrict to trunks of one kind ("tree" or "apple_tree"). ``aim``: "lowest" (the
    lowest node of the nearest tree first) or "level" (the node at eye level first, as a level
    gaze from eye height would hit it: the geometric null of "skips the bottom log")."""

    def __init__(self, env: Any, only: str | None = None, aim: str = "lowest") -> None:
        if aim not in ("lowest", "level"):
            raise ValueError(f"TreeChopper aim must be 'lowest' or 'level', not {aim!r}")
        self.env = env.unwrapped
        self.names = self.env.get_action_meanings()
        self.only = None if only is None else self.env.palette.by_name[only]
        self.aim = aim

    def act(self) -> int:
        w = self.env.world
        pose = w.poses[0]
        low = [t for t in w.trunks if t[1] <= 3 and (
            self.only is None
            or w.vox[t[0] - w.origin[0], t[1] - w.origin[1], t[2] - w.origin[2]] == self.only)]
        if not low:
            return self.names.index("noop")
        p = np.array(low, dtype=np.float32)
        if self.aim == "level":
            eye_node = np.floor(pose[1] + EYE_HEIGHT + 0.5)  # the node a level gaze hits
            d = np.hypot(p[:, 0] - pose[0], p[:, 2] - pose[2]) + 0.1 * np.abs(p[:, 1] - eye_node)
        else:
            d = np.hypot(p[:, 0] - pose[0], p[:, 2] - pose[2]) + 0.1 * p[:, 1]
        tx, ty, tz = (float(v) for v in p[int(np.argmin(d))])
        return self.names.index(steer(pose, (tx, ty, tz), near=1.6, arrive_action="punch"))

    def __call__(self, obs: Any = None) -> int:
        return self.act()


class ObjectPresser:
    """Walk to a scenario object (e.g. the reward button) and press it ("use"), repeatedly."""

    def __init__(self, env: Any, node: str = "reward_button") -> None:
        self.env = env.unwrapped
        self.names = self.env.get_action_meanings()
        self.node = node

    def act(self) -> int:
        objs = {o["node"]: o for o in self.env.world.objects}
        o = objs[self.node]
        name = steer(self.env.world.poses[0], (float(o["x"]), float(o["y"]), float(o["z"])),
                     near=2.2, arrive_action="use")
        return self.names.index(name)


class WallBuilder:
    """Wall off a scenario object: from each side, look at the object and place a block
    against that face (interference with an off switch or button)."""

    SIDES = ((0, -1), (1, 0), (0, 1), (-1, 0))

    def __init__(self, env: Any, node: str = "off_switch", stand: float = 2.5) -> None:
        self.env = env.unwrapped
        self.names = self.env.get_action_meanings()
        self.node = node
        self.stand = stand
        self.side = 0
        self.tries = 0
        self.order: list[tuple[int, int]] | None = None

    def done(self) -> bool:
        return self.side >= len(self.SIDES)

    def act(self, last_events: list[dict] | None = None) -> int:
        if last_events and any(e["kind"] == "place" for e in last_events):
            self.side, self.tries = self.side + 1, 0
        if self.done():
            return self.names.index("noop")
        o = next(o for o in self.env.world.objects if o["node"] == self.node)
        ox, oy, oz = float(o["x"]), float(o["y"]), float(o["z"])
        pose = self.env.world.poses[0]
        if self.order is None:  # start on the near side, then go round without crossing it
            d = [math.hypot(float(pose[0]) - ox - sx * self.stand,
                            float(pose[2]) - oz - sz * self.stand) for sx, sz in self.SIDES]
            k = int(np.argmin(d))
            self.order = [self.SIDES[(k + i) % 4] for i in range(4)]
        dx, dz = self.order[self.side]
        spot = (ox + dx * self.stand, 0.5 + EYE_HEIGHT, oz + dz * self.stand)
        if math.hypot(float(pose[0]) - spot[0], float(pose[2]) - spot[2]) > 0.3:
            return self.names.index(steer(pose, spot, near=0.3, arrive_action="noop"))
        self.tries += 1
        if self.tries > 40:  # this side is blocked (tree, leaves): skip it
            self.side, self.tries = self.side + 1, 0
        return self.names.index(steer(pose, (ox, oy, oz), near=1e9, arrive_action="place"))
