"""``mtsandbox play``: play a task yourself with the real Minetest client; the episodes are
recorded in the usual recording format (demonstrations for the world model, the replay viewer).

    mtsandbox play --env-id MinetestSandbox/RewardButton-v0 --as agent --out demos/
    mtsandbox play --env-id MinetestSandbox/OffSwitch-v0 --as overseer --agent-policy chopper
    mtsandbox play --run-client            # also start the client on your display

It starts the env (a real server on 127.0.0.1), prints the client command line (name ``player``
for the agent, ``overseer`` for the first overseer; with the server's password), waits for you
to join, then steps the env at real time (20 steps/s) with your controls: W/A/S/D move, space
jumps, the mouse turns the body (it follows your look in 15/10 degree steps), left click
punches, right click uses a button/switch/lever, shift + right click places a block. Ctrl-C
stops and keeps what was recorded (the episode is closed with end_reason "closed" and
``meta.human_play.interrupted`` true). The key mapping is documented in tools/play.py.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-id", default="MinetestSandbox/TreePunch-v0",
                        help="gymnasium id (default: %(default)s)")
    parser.add_argument("--as", dest="role", choices=("agent", "overseer"), default="agent",
                        help="play the agent (client name 'player') or the first overseer "
                             "(client name 'overseer')")
    parser.add_argument("--out", default="demos", help="recording root (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None, help="seed of the first reset")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="episode length in steps (default: the id's, 500 = 25 s)")
    parser.add_argument("--agent-policy", choices=("noop", "random", "chopper"), default="noop",
                        help="with --as overseer: what drives the agent")
    parser.add_argument("--run-client", action="store_true",
                        help="start the real client on your display (else join yourself with "
                             "the printed command line)")
    parser.add_argument("--xvfb", action="store_true",
                        help="with --run-client: on a private Xvfb (headless checks only)")
    parser.add_argument("--size", default="800x600", help="client window WxH for --run-client")
    parser.add_argument("--join-timeout", type=float, default=600.0,
                        help="seconds to wait for the human to join (default: %(default)s)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra env options (EnvConfig fields), values parsed as YAML")


def _parse_set(items: list[str]) -> dict:
    import yaml

    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise ValueError(f"--set expects KEY=VALUE, got {it!r}")
        out[k] = yaml.safe_load(v)
    return out


def cli(args: argparse.Namespace) -> int:
    import os

    from mtsandbox.agents.scripted import TreeChopper
    from mtsandbox.tools.play import HumanPlay, PlayConfig, PlayError

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        extra = _parse_set(args.set)
    except ValueError as e:
        print(f"error: {e}" if "--set" in str(e) else f"error: --size must be WxH, got "
              f"{args.size!r}")
        return 2
    if args.run_client and not args.xvfb and not os.environ.get("DISPLAY"):
        print("error: --run-client needs a $DISPLAY (or join from another machine's client "
              "through an SSH tunnel; the server listens on 127.0.0.1 only)")
        return 1
    cfg = PlayConfig(env_id=args.env_id, role=args.role, out=args.out, episodes=args.episodes,
                     seed=args.seed, max_steps=args.max_steps, agent_policy=args.agent_policy,
                     run_client=args.run_client, client_xvfb=args.xvfb, client_size=(w, h),
                     join_timeout_s=args.join_timeout, env_kwargs=extra,
                     agent_factories={"chopper": TreeChopper})
    play = HumanPlay(cfg)
    rc = 0
    try:
        play.start()
        print(f"{args.env_id}: you play the {args.role} as {play.name!r}; recording to "
              f"{args.out}/")
        print("join with:\n  " + play.connect_line())
        play.run()
    except KeyboardInterrupt:
        print("\ninterrupted: keeping what was recorded")
        rc = 130
    except PlayError as e:
        print(f"error: {e}")
        rc = 1
    finally:
        play.close()
    for p in play.episode_paths:
        print(f"recorded {p}")
    if play.action_counts:
        top = sorted(play.action_counts.items(), key=lambda kv: -kv[1])
        print(f"{play.steps} steps; actions: " + ", ".join(f"{k} {v}" for k, v in top))
    return rc
