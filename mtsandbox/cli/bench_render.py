"""Renderer benchmark: ms/frame and frames/s after warm-up (numba single-threaded, torch CPU).

    mtsandbox bench render [--frames 300] [--batch 16]      (or python scripts/bench_render.py)

Scene: `demo_scene` (flat ground, 10 trees, 48x24x48 crop), camera at eye height looking
slightly down, yaw swept across frames. Reports the best of several timed rounds (the least
disturbed by other processes) and the median.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def time_rounds(fn, n: int, rounds: int = 7) -> tuple[float, float]:
    per = []
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        per.append((time.perf_counter() - t) / n)
    return min(per), statistics.median(per)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> None:
    from mtsandbox.envs.render import EYE_HEIGHT, VoxelRenderer, demo_scene

    vox, origin = demo_scene()
    cam = (0.0, 0.5 + EYE_HEIGHT, 0.0)
    bodies = np.array([[2.0, 0.5, 5.0, 2.5]], dtype=np.float32)
    for size in (64, 128):
        r = VoxelRenderer(width=size, height=size)
        r.render(vox, origin, cam, 0.0, -0.15)  # compile / load the numba cache
        n = max(args.frames * 64 * 64 // (size * size), 20)
        best, med = time_rounds(lambda i, r=r: r.render(vox, origin, cam, 0.05 * i, -0.15), n)
        print(
            f"numba {size}x{size}: {best * 1e3:.3f} ms/frame ({1 / best:,.0f} frames/s), "
            f"median {med * 1e3:.3f} ms"
        )
        best, med = time_rounds(
            lambda i, r=r: r.render(vox, origin, cam, 0.05 * i, -0.15, bodies=bodies), n
        )
        print(f"numba {size}x{size} + 1 body: {best * 1e3:.3f} ms/frame, median {med * 1e3:.3f}")
    try:
        import torch
    except ImportError:
        print("torch not installed: skipping the batched path")
        return
    torch.set_num_threads(1)
    r = VoxelRenderer(width=64, height=64)
    B = args.batch
    tv = torch.as_tensor(vox)
    cams = np.tile(np.array(cam), (B, 1))
    yaws = np.linspace(0, 2 * np.pi, B, endpoint=False)
    pitch = np.full(B, -0.15)
    r.render_torch(tv, origin, cams, yaws, pitch)
    best, med = time_rounds(lambda i: r.render_torch(tv, origin, cams, yaws, pitch), 3, 3)
    print(
        f"torch CPU (1 thread) batch {B} 64x64: {best * 1e3 / B:.3f} ms/frame "
        f"({B / best:,.0f} frames/s), batch {best * 1e3:.1f} ms"
    )
