"""``mtsandbox`` command line: ``mtsandbox <command> [options]``.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``cli(args) -> int``; modules are imported only when their command runs (``mtsandbox --help``
imports none of them). Commands whose module does not exist (yet) are left out, so a missing
piece never breaks the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# command -> "module:function". Add yours here.
COMMANDS: dict[str, str] = {
    "train": "mtsandbox.agents.train:cli",
    "eval": "mtsandbox.agents.evaluate:cli",
    "replay": "mtsandbox.cli.replay:cli",
    "probe": "mtsandbox.cli.probe:cli",
    "view": "mtsandbox.cli.view:cli",
    "bench": "mtsandbox.cli.bench:cli",
    "demo": "mtsandbox.cli.demo:cli",
    "experiment": "mtsandbox.cli.experiment:cli",
    "sweep": "mtsandbox.cli.sweep:cli",
    "offswitch": "mtsandbox.experiments.offswitch:cli",
    "wireheading": "mtsandbox.experiments.wireheading:cli",
    "correction": "mtsandbox.experiments.correction:cli",
    "absent-supervisor": "mtsandbox.experiments.absent_supervisor:cli",
    "play": "mtsandbox.cli.play:cli",
    "figures": "mtsandbox.cli.figures:cli",
    "train-world-model": "mtsandbox.cli.train_world_model:run",
    "doc-images": "mtsandbox.cli.doc_images:run",
}

HELP: dict[str, str] = {
    "train": "train PPO from a YAML config (checkpoints, TensorBoard logs, resume)",
    "eval": "evaluate a checkpoint or a random policy for N episodes",
    "replay": "browse recorded episodes in a local web viewer, or export one",
    "probe": "interpretability probes on a checkpoint (HTML report)",
    "view": "watch a running environment with the real Minetest client (or print how)",
    "bench": "benchmarks: env throughput, scaling, training, learning, renderer, sim-vs-real, soak",
    "demo": "the main job: short training run, evaluation with a recording, replay, probe report",
    "experiment": "run the seed-claim experiments (experiments/claims.yaml), write a report",
    "offswitch": "the off-switch experiment: train conditions x seeds, evaluate, report",
    "wireheading": "the wireheading experiment: button distance and payoff sweeps, controls",
    "correction": "the correction experiment: compliance against a placebo lever, resistance",
    "absent-supervisor": "the absent-supervisor experiment: shortcut when unobserved, controls",
    "play": "play a task yourself with the real Minetest client; records the episodes",
    "figures": "regenerate the README's figures and docs/benchmarks.md from results/",
    "sweep": "seeds x hyper-parameter grid of training runs on Ray (local or --address cluster)",
    "train-world-model": "collect random + scripted episodes, train the world model, report errors",
    "doc-images": "regenerate docs/img/frames.png (the README's frames) from real servers",
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def available_commands() -> dict[str, str]:
    """The entries of :data:`COMMANDS` whose module can be imported."""
    return {cmd: target for cmd, target in COMMANDS.items()
            if _module_exists(target.split(":", 1)[0])}


def _load(target: str):
    module_name, _, func = target.partition(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, func or "cli")


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """Top-level parser; only command ``load`` (if any) gets its real arguments."""
    parser = argparse.ArgumentParser(prog="mtsandbox", description="Minetest RL sandbox")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmd, target in available_commands().items():
        sp = sub.add_parser(cmd, help=HELP.get(cmd, ""), description=HELP.get(cmd))
        if cmd == load:
            module, func = _load(target)
            module.add_arguments(sp)
            sp.set_defaults(_func=func)
        else:
            sp.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = available_commands()
    load = argv[0] if argv and argv[0] in commands else None
    parser = build_parser(load)
    args = parser.parse_args(argv)
    return int(args._func(args) or 0)
