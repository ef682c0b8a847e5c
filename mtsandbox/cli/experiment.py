"""``mtsandbox experiment``: run the seed claims (experiments/claims.yaml) and write a report.

    mtsandbox experiment list
    mtsandbox experiment run all --checkpoint treepunch=runs/<run> \
        --checkpoint rewardbutton=runs/<run> --out results/<name>
    mtsandbox experiment run 1 --checkpoint treepunch=runs/a --checkpoint treepunch=runs/b ...
    mtsandbox experiment run 4 --train --set total_steps=100000 --out results/rb

A name given several times means several seeds. Claims whose checkpoint is missing are
reported as "not run" with the command that would run them (unless ``--train``).
"""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("run", "list"), help="run claims, or list them")
    parser.add_argument("claims", nargs="*", default=[],
                        help="claim numbers (1-8) or 'all' (default: all)")
    parser.add_argument("--checkpoint", "-c", action="append", default=[], metavar="NAME=PATH",
                        help="checkpoint (run dir or checkpoints/<tag>) for NAME: treepunch, "
                             "rewardbutton, offswitch, correction; repeat a NAME for seeds")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default results/<date>)")
    parser.add_argument("--train", action="store_true",
                        help="train missing checkpoints first (claims.yaml train entries)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="training overrides for --train (e.g. total_steps=100000)")
    parser.add_argument("--episodes", "-n", type=int, default=None,
                        help="eval episodes per claim (default: claims.yaml)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="steps per eval episode (default: claims.yaml)")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device for the policies")
    parser.add_argument("--claims-file", default=None, help="claims YAML (default: built-in)")


def parse_checkpoints(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--checkpoint wants NAME=PATH, got {it!r}")
        out.setdefault(name.strip(), []).append(path.strip())
    return out


def cli(args: argparse.Namespace) -> int:
    import datetime as _dt

    from rich.console import Console

    from mtsandbox.experiments.claims import load_claims

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        spec = load_claims(args.claims_file)
    except (OSError, ValueError) as e:
        console.print(f"[red]error:[/red] claims file: {e}")
        return 2
    if args.action == "list":
        for c, s in spec["claims"].items():
            print(f"{c}: {s.get('title', '')}  [needs: {', '.join(s.get('checkpoints', []))}]")
        return 0
    claims = args.claims or ["all"]
    if "all" in claims:
        claims = list(spec["claims"])
    try:
        ckpts = parse_checkpoints(args.checkpoint)
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    known = set(spec["checkpoints"])
    bad = [n for n in ckpts if n not in known]
    bad_claims = [c for c in claims if c not in spec["claims"]]
    if bad or bad_claims:
        console.print(f"[red]error:[/red] unknown checkpoint name(s) {bad} (known: "
                      f"{sorted(known)})" if bad else
                      f"[red]error:[/red] unknown claim(s) {bad_claims} (known: "
                      f"{', '.join(spec['claims'])}, all)")
        return 2
    out = args.out or f"results/{_dt.datetime.now():%Y%m%d_%H%M%S}"
    from mtsandbox.experiments.report import run_experiments

    command = "mtsandbox " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and sys.argv[0].endswith("mtsandbox") else \
        "mtsandbox experiment run " + " ".join(claims) + "".join(
            f" --checkpoint {n}={p}" for n, ps in ckpts.items() for p in ps) + f" --out {out}"
    doc = run_experiments(claims, ckpts, out, command=command, episodes=args.episodes,
                          max_steps=args.max_steps, seed=args.seed, device=args.device,
                          train=args.train, train_overrides=args.overrides,
                          spec_path=args.claims_file,
                          log=lambda s: console.print(s))
    for r in doc["claims"]:
        print(f"claim {r['claim']}: {r['verdict']}  ({r['title']})")
    print(f"wrote {out}/report.md and {out}/figures.json")
    return 0
