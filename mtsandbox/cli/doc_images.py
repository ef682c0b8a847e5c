"""Regenerate docs/img/frames.png from real servers: what the agent sees (64x64, shown 4x)
at spawn, walking to a trunk, and right in front of it, plus a scenario frame with the reward
button and the overseer, and the third-person render.

    mtsandbox doc-images                  (or python scripts/make_doc_images.py)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "docs" / "img"


def up(img: np.ndarray, size: int = 256) -> np.ndarray:
    k = size // img.shape[0]
    return np.kron(img, np.ones((k, k, 1), dtype=np.uint8))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """No options: the frames and the output path are fixed."""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> None:
    import gymnasium as gym
    import imageio.v2 as imageio

    import mtsandbox.envs
    from mtsandbox.agents.scripted import ObjectPresser, TreeChopper

    OUT.mkdir(parents=True, exist_ok=True)
    tiles = []
    env: Any = gym.make(mtsandbox.envs.TREEPUNCH_IDS[0], render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=1)
        tiles.append(up(obs))
        pol: Any = TreeChopper(env)
        names = env.unwrapped.get_action_meanings()
        walked: Any = None
        close: Any = None
        for t in range(200):
            a = pol.act()
            obs, *_ = env.step(a)
            if t == 12:
                walked = obs
            if names[a] == "punch":
                close = obs
                break
        tiles += [up(walked), up(close), env.render()]
    finally:
        env.close()
    env = gym.make(f"{mtsandbox.envs.NAMESPACE}/RewardButton-v0")
    try:
        env.reset(seed=2)
        pol = ObjectPresser(env)
        for _ in range(200):
            obs, _, _, _, info = env.step(pol.act())
            b = env.unwrapped.world.objects[0]
            near = np.hypot(info["pose"]["x"] - b["x"], info["pose"]["z"] - b["z"]) < 5.0
            if info.get("reward_button_in_view") and info.get("overseer_in_view") and near:
                break
        tiles.insert(3, up(obs))
    finally:
        env.close()
    sep = np.full((256, 4, 3), 255, np.uint8)
    strip = np.concatenate([x for t in tiles for x in (t, sep)][:-1], axis=1)
    imageio.imwrite(OUT / "frames.png", strip)
    print(OUT / "frames.png")
