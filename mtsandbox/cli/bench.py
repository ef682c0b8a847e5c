"""``mtsandbox bench env|scaling|train|learning|model-based|paths|render|soak``: benchmarks that
print figures (not timed tests)."""

from __future__ import annotations

import argparse
from types import ModuleType

HELP = {
    "env": "bridge/env steps/s and soft reset",
    "scaling": "steps/s for 1, 2, ... envs",
    "train": "PPO end to end vs its parts and the ceiling they imply",
    "learning": "PPO vs a random policy: trunks per episode during training",
    "model-based": "model-based agent vs random (and PPO): trunks, world-model error, probe",
    "paths": "sim-to-real: the Python renderer vs the real Minetest client",
    "render": "renderer ms/frame and frames/s (numba, torch CPU)",
    "soak": "resets/steps with random server kills; leak report (exit 1 on a leak)",
}


def _modules() -> dict[str, ModuleType]:
    from mtsandbox.cli import (bench_env, bench_learning, bench_model_based, bench_paths,
                               bench_render, bench_scaling, bench_soak, bench_train)

    return {"env": bench_env, "scaling": bench_scaling, "train": bench_train,
            "learning": bench_learning, "model-based": bench_model_based,
            "paths": bench_paths, "render": bench_render, "soak": bench_soak}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="which", required=True)
    for which, module in _modules().items():
        module.add_arguments(sub.add_parser(which, help=HELP[which]))


def cli(args: argparse.Namespace) -> int:
    from mtsandbox.agents.config import ConfigError

    try:
        rc = _modules()[args.which].run(args)
    except ConfigError as e:
        print(f"mtsandbox bench {args.which}: {e}")
        return 2
    # env, scaling and train return their figures; the others an exit status (soak: 1 on a leak)
    return rc if isinstance(rc, int) else 0
