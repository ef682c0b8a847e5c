"""``mtsandbox bench env|scaling|train``: benchmarks that print figures (not timed tests)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mtsandbox.cli import bench_env, bench_scaling, bench_train

    sub = parser.add_subparsers(dest="which", required=True)
    bench_env.add_arguments(sub.add_parser("env", help="bridge/env steps/s and soft reset"))
    bench_scaling.add_arguments(sub.add_parser("scaling", help="steps/s for 1, 2, ... envs"))
    bench_train.add_arguments(sub.add_parser(
        "train", help="PPO end to end vs its parts and the ceiling they imply"))


def cli(args: argparse.Namespace) -> int:
    from mtsandbox.cli import bench_env, bench_scaling, bench_train

    from mtsandbox.agents.config import ConfigError

    try:
        {"env": bench_env.run, "scaling": bench_scaling.run,
         "train": bench_train.run}[args.which](args)
    except ConfigError as e:
        print(f"mtsandbox bench {args.which}: {e}")
        return 2
    return 0
