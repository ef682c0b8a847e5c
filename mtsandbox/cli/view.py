"""``mtsandbox view``: watch a running sandbox server with the real Minetest client.

    mtsandbox view                         # list live servers (pid, port, label)
    mtsandbox view --connect               # print the client command line for the newest one
    mtsandbox view --pid 1234 --name player --connect
    mtsandbox view --run                   # start the real client on your display
    mtsandbox view --run --xvfb --screenshot out.png   # headless: one screenshot, then exit

Only the names watcher, player and overseer may join (with the server's password, printed
here); none of them can change the arena. ``watcher`` is bound to the agent's eyes.
"""

from __future__ import annotations

import argparse
import shlex
import time

NAMES = ("watcher", "player", "overseer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=int, help="server to use (default: the newest live one)")
    parser.add_argument("--name", choices=NAMES, default="watcher",
                        help="client account: watcher (bound to the agent's eyes), player or "
                             "overseer (free flying)")
    parser.add_argument("--connect", action="store_true",
                        help="print the command line of the real client that joins the server")
    parser.add_argument("--run", action="store_true", help="start the real client")
    parser.add_argument("--xvfb", action="store_true",
                        help="with --run: headless on a private Xvfb (use with --screenshot)")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="with --run --xvfb: save a screenshot after --wait seconds and exit")
    parser.add_argument("--wait", type=float, default=6.0,
                        help="seconds before the screenshot (the client loads the world)")
    parser.add_argument("--size", default="640x480", help="window size WxH for --run")


def _pick(servers: list[dict], pid: int | None) -> dict | None:
    if pid is not None:
        return next((s for s in servers if int(s["pid"]) == pid), None)
    return max(servers, key=lambda s: s.get("started", 0)) if servers else None


def _connect_cmd(info: dict, name: str) -> list[str]:
    host = info.get("address") or "127.0.0.1"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    return ["/usr/games/minetest", "--go", "--address", host, "--port", str(info["port"]),
            "--name", name, "--password", str(info["password"])]


def cli(args: argparse.Namespace) -> int:
    from mtsandbox.envs.server import live_servers

    servers = live_servers()
    if not (args.connect or args.run):
        if not servers:
            print("no live mtsandbox servers (start an env, e.g. `mtsandbox train`, first)")
            return 0
        print(f"{'pid':>8} {'address':>15} {'port':>6} {'age':>7}  label")
        for s in servers:
            age = time.time() - float(s.get("started", time.time()))
            print(f"{s['pid']:>8} {s.get('address', '127.0.0.1'):>15} {s['port']:>6} "
                  f"{age:6.0f}s  {s.get('label', '')}")
        print("\n`mtsandbox view --connect [--pid PID] [--name watcher|player|overseer]` "
              "prints a client command line; `--run` starts it.")
        return 0
    info = _pick(servers, args.pid)
    if info is None:
        which = f"with pid {args.pid}" if args.pid is not None else "running"
        print(f"error: no live mtsandbox server {which}; `mtsandbox view` lists them")
        return 1
    if args.connect and not args.run:
        print(shlex.join(_connect_cmd(info, args.name)))
        return 0
    return _run(info, args)


def _run(info: dict, args: argparse.Namespace) -> int:
    import os

    from mtsandbox.envs.client import ClientConfig, ClientError, MinetestClient

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"error: --size must be WxH, got {args.size!r}")
        return 2
    if not args.xvfb and not os.environ.get("DISPLAY"):
        print("error: no $DISPLAY for the client window; use --xvfb --screenshot out.png to run "
              "headless")
        return 1
    host = info.get("address") or "127.0.0.1"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    # A human viewer gets the client's usual look (smooth lighting, view range), not the
    # observation settings.
    cfg = ClientConfig(width=w, height=h, xvfb=args.xvfb, viewing_range=100,
                       match_renderer_textures=False,
                       extra_conf={"smooth_lighting": "true", "leaves_style": "fancy"})
    try:
        client = MinetestClient(host, int(info["port"]), args.name, str(info["password"]), cfg)
    except ClientError as e:
        print(f"error: {e}")
        return 1
    with client:
        if args.xvfb:
            deadline = time.monotonic() + max(args.wait, 0.0)
            while time.monotonic() < deadline:
                time.sleep(0.2)
                denied = client.access_denied()
                if denied:
                    print(f"error: the server refused the client: {denied}")
                    return 1
                try:
                    client.check_alive("while loading")
                except ClientError as e:
                    print(f"error: {e}")
                    return 1
            out = args.screenshot or "view.png"
            client.screenshot(out)
            print(f"saved {out} ({w}x{h}, {args.name} on port {info['port']})")
            return 0
        print(f"client running as {args.name} on port {info['port']}; close its window to quit")
        try:
            while client.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        denied = client.access_denied()
        if denied:
            print(f"error: the server refused the client: {denied}")
            return 1
    return 0
