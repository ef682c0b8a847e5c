"""``mtsandbox replay``: browse recorded episodes in a local web viewer, or export one.

Wire it into the main CLI with::

    p = subparsers.add_parser("replay", help="replay viewer for recorded episodes")
    replay_cli.add_arguments(p)
    p.set_defaults(func=replay_cli.cli)

Examples::

    mtsandbox replay runs/eval                      # serve, open a browser
    mtsandbox replay runs/eval --port 8765 --no-browser
    mtsandbox replay runs/eval/ep_000003 --export ep3.gif --fps 15 --scale 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="an episode directory, or a directory holding episodes (searched recursively)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free port)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; the viewer has no auth)",
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    parser.add_argument(
        "--episode",
        default=None,
        help="episode id (path relative to PATH) to open or export; default: "
        "PATH itself if it is an episode, else the first one",
    )
    parser.add_argument(
        "--export",
        metavar="OUT",
        default=None,
        help="write the episode to OUT (.gif, or .mp4 when an ffmpeg backend "
        "is installed) instead of serving",
    )
    parser.add_argument(
        "--resim", action="store_true",
        help="re-simulate the episode(s) in a fresh server and check they reproduce exactly",
    )
    parser.add_argument(
        "--watch", action="store_true",
        help="with --resim: replay with the real Minetest client attached (obs_source=client)",
    )
    parser.add_argument("--fps", type=float, default=10.0, help="export frame rate")
    parser.add_argument("--scale", type=int, default=4, help="export pixel scale")
    parser.add_argument(
        "--agent", type=int, default=0, help="export: agent index for multi-agent recordings"
    )


def cli(args: argparse.Namespace) -> int:
    from mtsandbox.tools.recording import RecordingError, export_episode, find_episodes

    root = Path(args.path)
    if not root.exists():
        print(f"replay: no such path: {root}", file=sys.stderr)
        return 2
    try:
        if args.resim:
            from mtsandbox.tools.resim import resimulate

            eps = [root / args.episode] if args.episode else find_episodes(root)
            if not eps:
                print(f"replay: no episodes under {root}", file=sys.stderr)
                return 2
            bad = 0
            for ep_path in eps:
                res = resimulate(ep_path, obs_source="client" if args.watch else "python")
                bad += not res.reproduced
                print(f"{ep_path}: {res.summary()}" + "".join(f" ({n})" for n in res.notes))
            return 1 if bad else 0
        if args.export:
            if args.episode:
                ep_path = root / args.episode
            else:
                eps = find_episodes(root)
                if not eps:
                    print(f"replay: no episodes under {root}", file=sys.stderr)
                    return 2
                ep_path = eps[0]
                if len(eps) > 1:
                    print(
                        f"replay: {len(eps)} episodes under {root}; exporting {ep_path} "
                        "(choose with --episode)",
                        file=sys.stderr,
                    )
            out = export_episode(
                ep_path, args.export, fps=args.fps, scale=args.scale, agent=args.agent
            )
            print(f"replay: wrote {out}")
            return 0
        from mtsandbox.tools.replay_server import serve

        serve(
            root,
            host=args.host,
            port=args.port,
            open_browser=not args.no_browser,
            episode=args.episode,
        )
        return 0
    except RecordingError as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m mtsandbox.cli.replay``) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="mtsandbox replay", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return cli(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
