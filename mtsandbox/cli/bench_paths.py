"""Sim-to-real check: the fast Python renderer against the real Minetest client.

1. One episode (the scripted TreeChopper, or a checkpoint's policy) observed through the real
   client (``obs_source="client"``: Debian's client under Xvfb, bound to the agent's camera),
   with the Python render of the same step kept alongside. Writes a PNG strip (real client on
   top, Python renderer below, per-pixel class agreement at the bottom) to
   ``docs/img/sim_vs_real.png``.
2. Agreement: every pixel of both images is classified by colour (nearest class colour: sky,
   trunk, leaves, grass/dirt, body, other; class colours are the Python frames' mean colours
   over their ground-truth semantic labels) and the two class maps compared. Also reported: the
   client pixels' colour class against the Python ground-truth semantics, and the mean
   absolute RGB difference.
3. Synced steps/s of the client path at the observation size (frames whose marker equals the
   step; reset excluded), next to the fast path's steps/s.
4. Evaluation of the policy under both paths: trunks dug per episode (hidden performance) and
   observed return.

    mtsandbox bench paths                                 # TreeChopper, 64x64
    mtsandbox bench paths --checkpoint runs/x             # a trained PPO checkpoint
    mtsandbox bench paths --episodes 3 --max-steps 500 --json out.json
    python scripts/compare_paths.py [options]             # the same, as a script
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np

from mtsandbox.envs.nodes import load_palette

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["sky", "trunk", "leaves", "ground", "body", "other"]


def semantic_classes(sem: np.ndarray) -> np.ndarray:
    """Python ground-truth semantic map -> class ids (index into CLASSES)."""
    pal = load_palette().by_name
    lut = np.full(256, CLASSES.index("other"), dtype=np.uint8)
    lut[0] = CLASSES.index("sky")
    for n in ("tree", "apple_tree", "pine_tree"):
        if n in pal:
            lut[pal[n]] = CLASSES.index("trunk")
    for n in ("leaves", "apple"):
        if n in pal:
            lut[pal[n]] = CLASSES.index("leaves")
    for n in ("grass", "dirt"):
        lut[pal[n]] = CLASSES.index("ground")
    lut[64:128] = CLASSES.index("body")
    return lut[sem]


def class_colours(frames: list[np.ndarray], sems: list[np.ndarray]) -> np.ndarray:
    """Mean RGB per class over Python frames (classes never seen get NaN)."""
    rgb = np.concatenate([f.reshape(-1, 3) for f in frames]).astype(np.float64)
    cls = np.concatenate([semantic_classes(s).reshape(-1) for s in sems])
    out = np.full((len(CLASSES), 3), np.nan)
    for k in range(len(CLASSES)):
        if (cls == k).any():
            out[k] = rgb[cls == k].mean(0)
    return out


def classify(img: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Nearest class colour per pixel."""
    ok = ~np.isnan(colours[:, 0])
    idx = np.flatnonzero(ok)
    d = ((img.reshape(-1, 1, 3).astype(np.float64) - colours[ok][None]) ** 2).sum(-1)
    return idx[d.argmin(1)].reshape(img.shape[:2]).astype(np.uint8)


# --------------------------------------------------------------------------------- policies
class CheckpointPolicy:
    """A PPO checkpoint from agents/train.py, with its grayscale/frame-stack preprocessing."""

    def __init__(self, path: str) -> None:
        from mtsandbox.agents.checkpoints import load_checkpoint

        self.model, self.meta = load_checkpoint(path, device="cpu")
        cfg = self.meta.get("config", {})
        self.grayscale = bool(cfg.get("grayscale", False))
        self.stack = int(cfg.get("frame_stack", 1) or 1)
        self.env_id = self.meta.get("env_id")
        self.env_kwargs = dict(self.meta.get("env_kwargs") or {})
        self._buf: np.ndarray | None = None

    def prep(self, obs: np.ndarray, first: bool) -> np.ndarray:
        o = obs
        if self.grayscale:
            from mtsandbox.agents.vecenv import to_grayscale

            o = to_grayscale(o)
        if self.stack > 1:
            c = o.shape[-1]
            if first or self._buf is None:
                self._buf = np.zeros((*o.shape[:-1], c * self.stack), np.uint8)
            self._buf = np.roll(self._buf, -c, axis=-1)
            self._buf[..., -c:] = o
            o = self._buf
        return o

    def act(self, env: Any, obs: np.ndarray, first: bool) -> int:
        a, _ = self.model.predict(self.prep(obs, first), deterministic=True)
        return int(a)


class ScriptedPolicy:
    def __init__(self) -> None:
        self.pol: Any = None
        self.env_id = "MinetestSandbox/TreePunch-v0"
        self.env_kwargs: dict = {}

    def act(self, env: Any, obs: np.ndarray, first: bool) -> int:
        from mtsandbox.agents.scripted import TreeChopper

        if first or self.pol is None or self.pol.env is not env.unwrapped:
            self.pol = TreeChopper(env)
        return self.pol.act()


# ------------------------------------------------------------------------------------ runs
def run_episode(env: gym.Env, policy: Any, seed: int, max_steps: int, keep: bool = False
                ) -> dict:
    u: Any = env.unwrapped
    obs, info = env.reset(seed=seed)
    rec: dict[str, Any] = {"client": [], "python": [], "sem": [], "trunks": 0.0, "return": 0.0}
    steps, t_steps = 0, 0.0

    def keep_frame(o: np.ndarray) -> None:
        if keep and getattr(u, "last_python_rgb", None) is not None:
            rec["client"].append(o.copy())
            rec["python"].append(u.last_python_rgb.copy())
            rec["sem"].append(u.last_semantic.copy())

    keep_frame(obs)
    first = True
    for _ in range(max_steps):
        a = policy.act(env, obs, first)
        first = False
        t0 = time.perf_counter()
        obs, r, term, trunc, info = env.step(a)
        t_steps += time.perf_counter() - t0
        steps += 1
        rec["return"] += float(r)
        rec["trunks"] += float(info.get("hidden_performance", 0.0))
        keep_frame(obs)
        if term or trunc:
            break
    rec["steps"], rec["steps_per_s"] = steps, steps / max(t_steps, 1e-9)
    return rec


def make_env(policy: Any, source: str, width: int, height: int, max_steps: int) -> gym.Env:
    kw = dict(policy.env_kwargs)
    kw.update(width=width, height=height)
    if source == "client":
        kw["obs_source"] = "client"
    env = gym.make(policy.env_id, max_episode_steps=max_steps, **kw)
    if source != "client":  # keep the Python render for the strip in both modes
        u: Any = env.unwrapped
        orig = u._observe

        def _observe() -> tuple[Any, bool]:
            o, v = orig()
            u.last_python_rgb = o if not isinstance(o, dict) else o["rgb"]
            return o, v

        u._observe = _observe
    return env


def strip_png(rec: dict, colours: np.ndarray, path: Path, n: int = 8, scale: int = 3) -> None:
    import imageio.v3 as iio

    total = len(rec["client"])
    idx = np.linspace(1, total - 1, n).astype(int) if total > n else np.arange(total)
    cols = []
    for i in idx:
        c, p = rec["client"][i], rec["python"][i]
        cc, pc = classify(c, colours), classify(p, colours)
        agree = np.where((cc == pc)[..., None], np.array([40, 170, 60], np.uint8),
                         np.array([220, 40, 40], np.uint8))
        gap = np.full((2, c.shape[1], 3), 255, np.uint8)
        cols.append(np.concatenate([c, gap, p, gap, agree.astype(np.uint8)], 0))
        cols.append(np.full((cols[-1].shape[0], 2, 3), 255, np.uint8))
    img = np.concatenate(cols[:-1], 1)
    img = np.kron(img, np.ones((scale, scale, 1), np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, img)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--checkpoint", help="PPO checkpoint (default: scripted TreeChopper)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--episodes", type=int, default=2, help="evaluation episodes per path")
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "sim_vs_real.png"))
    ap.add_argument("--json", help="write the figures here")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    policy: Any = CheckpointPolicy(args.checkpoint) if args.checkpoint else ScriptedPolicy()
    results: dict[str, Any] = {"policy": args.checkpoint or "scripted TreeChopper",
                               "size": [args.width, args.height]}
    evals: dict[str, list[dict]] = {"python": [], "client": []}

    # Client path: the first episode doubles as the side-by-side episode.
    env = make_env(policy, "client", args.width, args.height, args.max_steps)
    try:
        for ep in range(args.episodes):
            rec = run_episode(env, policy, args.seed + ep, args.max_steps, keep=(ep == 0))
            if ep == 0:
                colours = class_colours(rec["python"], rec["sem"])
                agree, gt, mad = [], [], []
                for c, p, s in zip(rec["client"], rec["python"], rec["sem"], strict=True):
                    cc, pc = classify(c, colours), classify(p, colours)
                    agree.append(float((cc == pc).mean()))
                    gt.append(float((cc == semantic_classes(s)).mean()))
                    mad.append(float(np.abs(c.astype(int) - p.astype(int)).mean()))
                results["agreement_colour_class_pct"] = 100 * float(np.mean(agree))
                results["agreement_colour_class_min_pct"] = 100 * float(np.min(agree))
                results["client_class_vs_python_semantics_pct"] = 100 * float(np.mean(gt))
                results["python_class_vs_python_semantics_pct"] = 100 * float(np.mean(
                    [(classify(p, colours) == semantic_classes(s)).mean()
                     for p, s in zip(rec["python"], rec["sem"], strict=True)]))
                results["mean_abs_rgb_diff"] = float(np.mean(mad))
                results["frames_compared"] = len(agree)
                strip_png(rec, colours, Path(args.out))
                results["strip"] = str(args.out)
            evals["client"].append({"trunks": rec["trunks"], "return": rec["return"],
                                    "steps": rec["steps"], "steps_per_s": rec["steps_per_s"]})
            print(f"client ep {ep}: trunks {rec['trunks']:.0f} return {rec['return']:.2f} "
                  f"steps {rec['steps']} ({rec['steps_per_s']:.1f} synced steps/s)", flush=True)
        results["client_stats"] = dict(cast(Any, env.unwrapped)._faithful.stats)
    finally:
        env.close()

    env = make_env(policy, "python", args.width, args.height, args.max_steps)
    try:
        for ep in range(args.episodes):
            rec = run_episode(env, policy, args.seed + ep, args.max_steps)
            evals["python"].append({"trunks": rec["trunks"], "return": rec["return"],
                                    "steps": rec["steps"], "steps_per_s": rec["steps_per_s"]})
            print(f"python ep {ep}: trunks {rec['trunks']:.0f} return {rec['return']:.2f} "
                  f"steps {rec['steps']} ({rec['steps_per_s']:.1f} steps/s)", flush=True)
    finally:
        env.close()

    for src, eps in evals.items():
        results[f"{src}_trunks_per_episode"] = float(np.mean([e["trunks"] for e in eps]))
        results[f"{src}_return_per_episode"] = float(np.mean([e["return"] for e in eps]))
        results[f"{src}_steps_per_s"] = float(np.sum([e["steps"] for e in eps]) / np.sum(
            [e["steps"] / e["steps_per_s"] for e in eps]))
    results["episodes"] = evals
    print(json.dumps({k: v for k, v in results.items() if k != "episodes"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0
