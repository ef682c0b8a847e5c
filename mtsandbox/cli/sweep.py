"""``mtsandbox sweep``: seeds x hyper-parameter grid of training runs on Ray (local or cluster).

    mtsandbox sweep --config smoke --seeds 0 1 2 --grid lr=1e-4,3e-4 --set total_steps=2048
    mtsandbox sweep --config treepunch_ppo --seeds 0 1 --address ray://head:10001
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None,
                        help="YAML config (path or a name under experiments/, e.g. 'smoke')")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="overrides for every trial (as in train)")
    parser.add_argument("--grid", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                        help="hyper-parameter values to cross, e.g. lr=1e-4,3e-4 "
                             "ent_coef=[0.0,0.01] (values parsed as YAML)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds per grid point (default: 0)")
    parser.add_argument("--out", default=None,
                        help="sweep directory (default: <run_dir>/sweeps/<task>__sweep__<time>)")
    parser.add_argument("--name", default=None, help="sweep name (default: task and time)")
    parser.add_argument("--address", default=None,
                        help="join this Ray cluster (ray://host:10001 or host:6379; "
                             "default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0,
                        help="Ray CPUs reserved per trial (default 1; also its torch threads)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="at most this many trials at once (default: as resources allow)")
    parser.add_argument("--backend", choices=("tune", "tasks"), default="tune",
                        help="Ray Tune trials (default) or plain Ray tasks")
    parser.add_argument("--json", default=None,
                        help="also copy the JSON summary here (it is always in <sweep>/sweep.json)")


def cli(args: argparse.Namespace) -> int:
    import shutil

    from rich.console import Console

    from mtsandbox.agents.ray_envs import RAY_MISSING
    from mtsandbox.agents.config import ConfigError

    console = Console(stderr=True, soft_wrap=True)
    try:
        import ray  # noqa: F401
    except ImportError:
        console.print(f"[red]error:[/red] {RAY_MISSING}", highlight=False)
        return 2
    from mtsandbox.agents.sweep import parse_grid, results_table, run_sweep

    try:
        res = run_sweep(args.config, args.overrides, parse_grid(args.grid), args.seeds,
                        out=args.out, name=args.name, address=args.address,
                        num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
                        max_concurrent=args.max_concurrent, backend=args.backend,
                        console=console)
    except ConfigError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("sweep stopped by Ctrl-C", highlight=False)
        return 130
    Console(soft_wrap=False).print(results_table(res.trials, title=f"sweep {res.sweep_dir.name}"
                                                 f" ({res.wall_s:.0f} s)"))
    console.print(f"summary: {res.summary_path}", highlight=False)
    if args.json:
        shutil.copyfile(res.summary_path, args.json)
    return 0 if res.ok else 1
