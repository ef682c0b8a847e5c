"""Steering toward a point from a body pose: used by the scripted overseers (``scenarios``)
and the scripted agents (``mtsandbox.agents.scripted``)."""

from __future__ import annotations

import math

import numpy as np

from mtsandbox.envs.shared import EYE_HEIGHT


def wrap(a: float) -> float:
    """Angle ``a`` wrapped to [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def aim(pose: np.ndarray, target: tuple[float, float, float], eye: float = EYE_HEIGHT
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
