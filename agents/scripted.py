"""Scripted baselines that read the environment's ground truth (not pixels).

:class:`TreeChopper` walks to the nearest reachable trunk node and punches it: a sanity check
that the task is solvable in the real server, and an upper-ish baseline for learned agents.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def aim(pose: np.ndarray, target: tuple[float, float, float], eye: float = 1.47
        ) -> tuple[float, float, float]:
    """Yaw error, pitch error (radians) and horizontal distance from a body pose to a point."""
    x, y, z, yaw, pitch = (float(v) for v in pose[:5])
    dx, dy, dz = target[0] - x, target[1] - (y + eye), target[2] - z
    want_yaw = math.atan2(-dx, dz)  # look dir is (-sin yaw, cos yaw)
    horiz = math.hypot(dx, dz)
    want_pitch = math.atan2(dy, horiz)
    return wrap(want_yaw - yaw), want_pitch - pitch, horiz


def steer(pose: np.ndarray, target: tuple[float, float, float], near: float,
          arrive_action: str) -> str:
    """Action name that turns toward target, walks until within `near`, then does arrive_action."""
    dyaw, dpitch, dist = aim(pose, target)
    if abs(dyaw) > math.radians(8):
        return "turn_left" if dyaw > 0 else "turn_right"
    if dist > near:
        return "forward"
    if abs(dpitch) > math.radians(6):
        return "look_up" if dpitch > 0 else "look_down"
    return arrive_action


class TreeChopper:
    """Walk to the nearest low trunk node (height <= 3 above ground) and punch it."""

    def __init__(self, env: Any) -> None:
        self.env = env.unwrapped
        self.names = self.env.get_action_meanings()

    def act(self) -> int:
        w = self.env.world
        pose = w.poses[0]
        low = [t for t in w.trunks if t[1] <= 3]
        if not low:
            return self.names.index("noop")
        p = np.array(low, dtype=np.float32)
        d = np.hypot(p[:, 0] - pose[0], p[:, 2] - pose[2]) + 0.1 * p[:, 1]
        tx, ty, tz = (float(v) for v in p[int(np.argmin(d))])
        return self.names.index(steer(pose, (tx, ty, tz), near=1.6, arrive_action="punch"))

    def __call__(self, obs: Any = None) -> int:
        return self.act()
