"""``mtsandbox probe CHECKPOINT|random [--env-id ID] [--episodes N] [--out DIR]``: build the
interpretability report (``interp/report.py``): linear probes per layer vs a shuffled control,
attribution overlays, steering, ablation / patching, mirror test and tree-felling statistics.
For a model-based checkpoint: probes of its world model's latent state
(``interp/world_model.py``: ``make_model_based_report``).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", help="checkpoint directory (or run directory), or 'random' "
                                       "(an untrained network)")
    parser.add_argument("--env-id", default=None,
                        help="env id (default: the checkpoint's, else "
                             "MinetestSandbox/TreePunchShaped-v0)")
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra gymnasium.make kwarg (value parsed as YAML); repeatable")
    parser.add_argument("--episodes", "-n", type=int, default=2,
                        help="episodes with the policy acting (default 2)")
    parser.add_argument("--max-steps", type=int, default=200,
                        help="steps per episode (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="probe_report", help="report directory")
    parser.add_argument("--actor", default="policy", choices=("policy", "random", "scripted"),
                        help="who acts in the collected episodes (activations are always the "
                             "probed network's)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the extra scripted TreeChopper episode used for probe data")
    parser.add_argument("--no-live", action="store_true",
                        help="skip interventions that re-run episodes in the env")
    parser.add_argument("--recordings", nargs="+", default=None, metavar="DIR",
                        help="use recorded episodes instead of collecting new ones")
    parser.add_argument("--save-dataset", action="store_true",
                        help="also write the activation dataset (dataset.npz)")
    parser.add_argument("--device", default="cpu")


def _is_model_based(policy: str) -> bool:
    from mtsandbox.agents.checkpoints import MODEL_BASED_FORMAT, read_meta

    return str(policy) != "random" and read_meta(policy).get("format") == MODEL_BASED_FORMAT


def cli(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mtsandbox.agents.checkpoints import CheckpointError
    from mtsandbox.agents.config import ConfigError, apply_overrides
    from mtsandbox.interp.report import make_report

    console = Console(stderr=True)
    try:
        if args.episodes < 1 or args.max_steps < 1:
            raise ConfigError("--episodes and --max-steps must be >= 1")
        env_kwargs = apply_overrides({}, args.env_arg) if args.env_arg else None
        if _is_model_based(args.policy):
            from mtsandbox.interp.world_model import make_model_based_report

            print(make_model_based_report(
                args.policy, env_id=args.env_id, env_kwargs=env_kwargs,
                n_episodes=args.episodes, max_steps=args.max_steps, seed=args.seed,
                out_dir=args.out, recordings=args.recordings, device=args.device,
                log=lambda m: console.print(m, highlight=False)))
            return 0
        index = make_report(
            args.policy, env_id=args.env_id, env_kwargs=env_kwargs, n_episodes=args.episodes,
            max_steps=args.max_steps, seed=args.seed, out_dir=args.out, actor=args.actor,
            reference_actor=None if args.no_reference else "scripted", live=not args.no_live,
            recordings=args.recordings, device=args.device, save_dataset=args.save_dataset,
            log=lambda m: console.print(m, highlight=False))
    except (CheckpointError, ConfigError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        return 2
    print(index)
    return 0
