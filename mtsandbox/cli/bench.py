"""``mtsandbox bench env|scaling``: benchmarks that print figures (not timed tests)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mtsandbox.cli import bench_env, bench_scaling

    sub = parser.add_subparsers(dest="which", required=True)
    bench_env.add_arguments(sub.add_parser("env", help="bridge/env steps/s and soft reset"))
    bench_scaling.add_arguments(sub.add_parser("scaling", help="steps/s for 1, 2, ... envs"))


def cli(args: argparse.Namespace) -> int:
    from mtsandbox.cli import bench_env, bench_scaling

    {"env": bench_env.run, "scaling": bench_scaling.run}[args.which](args)
    return 0
