"""Soak test: thousands of resets and steps on real servers, with servers SIGKILLed at random.

    mtsandbox bench soak                      # defaults: ~5 min on 2 cores
    mtsandbox bench soak --resets 300 --steps 3000 --kill-prob 0.01 --json soak.json
    .venv/bin/python scripts/soak.py [options]  # the same, as a script

``--envs`` environments (one real Minetest server each, ``on_server_death="respawn"``) take
random actions; episodes end at a random length (mean ``steps / resets``) so both targets are
reached together. Before each env call, with probability ``--kill-prob``, the server process
group of a random env is SIGKILLed; the next call on that env is either a step (the episode is
truncated with ``truncation_reason == "server_died"``) or a reset (the reset respawns the
server). Everything printed is measured:

* resets, steps, kills sent, kills survived (the env later reset onto a *new*, live server and
  stepped again), respawns observed (increase of the envs' ``server_deaths``) and the
  truncations with reason ``server_died``;
* leaked fds: ``/proc/self/fd`` before any env was made vs after all were closed (and after
  warm-up vs at the end, envs open);
* leaked processes: servers this run started that still run after close; ``minetestserver``
  processes of this user that belong to no live env (not in the ``live_servers()`` registry),
  before vs after; unreaped zombie children;
* leaked run dirs: run dirs this run created that still exist after close, and the count of
  ``mtsandbox-*`` dirs in the temp dir before vs after;
* memory growth: this process's RSS after warm-up vs at the end (envs open), and after close;
  and per server process, RSS and open fds (``/proc/<pid>``) after its own warm-up
  (``--warmup`` resets) vs at its last reset, with the resets it served in between.

Exit status 0 only when nothing leaked, every kill was survived, and no server that served
``--min-server-resets`` resets after its warm-up grew by more than ``--max-server-growth-mb``
of RSS or by any open fd.

    mtsandbox bench soak --envs 1 --resets 10000 --steps 30000 --kill-prob 0 \
        --json results/bench/soak_server_memory.json     # the server-memory soak (~3 min)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def proc_rss_fds(pid: int) -> tuple[float, int] | None:
    """RSS in MB and open fds of another process, or None when it is gone."""
    try:
        rss = int(_status(pid)["VmRSS"].split()[0]) / 1024
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, KeyError, ValueError):
        return None


def running(pid: int) -> bool:
    try:
        return not _status(pid)["State"].startswith("Z")
    except (OSError, KeyError):
        return False


def minetest_processes() -> set[int]:
    """Running ``minetestserver`` processes of this user."""
    uid = str(os.getuid())
    out = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() != "minetestserver":
                    continue
            st = _status(int(p))
        except (OSError, KeyError):
            continue
        if st.get("Uid", "").split()[:1] == [uid] and not st.get("State", "").startswith("Z"):
            out.add(int(p))
    return out


def unregistered_servers() -> set[int]:
    from mtsandbox.envs.server import live_servers

    return minetest_processes() - {int(s["pid"]) for s in live_servers()}


def zombie_children() -> int:
    me, n = str(os.getpid()), 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                st = _status(int(p))
            except (OSError, KeyError):
                continue
            n += st.get("PPid") == me and st.get("State", "").startswith("Z")
    return n


def temp_run_dirs() -> set[str]:
    reg = f"mtsandbox-{os.getuid()}"  # the server registry's base dir, not a run dir
    return {str(p) for p in Path(tempfile.gettempdir()).glob("mtsandbox-*") if p.name != reg}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--env-id", default="MinetestSandbox/TreePunch-v0")
    ap.add_argument("--envs", type=int, default=2, help="environments (servers) at once")
    ap.add_argument("--resets", type=int, default=10000, help="target number of resets")
    ap.add_argument("--steps", type=int, default=100000, help="target number of steps")
    ap.add_argument("--kill-prob", type=float, default=0.001,
                    help="probability, before each env call, of SIGKILLing a random server")
    ap.add_argument("--warmup", type=int, default=5, help="episodes per env before measuring")
    ap.add_argument("--max-minutes", type=float, default=30.0, help="stop early after this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-server-growth-mb", type=float, default=5.0,
                    help="fail when a server's RSS grows more than this after its warm-up")
    ap.add_argument("--min-server-resets", type=int, default=500,
                    help="judge server growth only on servers that served this many resets")
    ap.add_argument("--json", help="also write the figures here")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The soak; 0 only when nothing leaked and every kill was survived (module docstring)."""
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401

    rng = random.Random(args.seed)
    mean_len = max(1.0, args.steps / max(1, args.resets))
    fds0, procs0, dirs0 = fd_count(), unregistered_servers(), temp_run_dirs()
    envs: list[Any] = [gym.make(args.env_id, on_server_death="respawn", reply_timeout_s=15.0)
                       for _ in range(args.envs)]
    started_pids: set[int] = set()
    started_dirs: set[str] = set()
    c = {"resets": 0, "steps": 0, "kills": 0, "kills_survived": 0, "truncated_server_died": 0,
         "reset_respawns": 0}
    killed_pid: list[int | None] = [None] * args.envs  # server killed, not yet replaced
    respawned: list[bool] = [False] * args.envs  # on a new server, not yet stepped
    left = [0] * args.envs
    t_start = time.perf_counter()
    # per server pid: resets served, and (resets, rss, fds) at its warm-up and at its last reset
    servers: dict[int, dict] = {}

    def sample_server(pid: int) -> None:
        s = servers.setdefault(pid, {"resets": 0, "warm": None, "last": None})
        s["resets"] += 1
        m = proc_rss_fds(pid)
        if m is None:
            return
        if s["warm"] is None and s["resets"] > args.warmup:
            s["warm"] = (s["resets"], *m)
        s["last"] = (s["resets"], *m)

    def do_reset(i: int) -> None:
        deaths = envs[i].unwrapped.server_deaths
        envs[i].reset(seed=rng.randrange(2**31))
        c["reset_respawns"] += envs[i].unwrapped.server_deaths - deaths
        c["resets"] += 1
        left[i] = max(1, round(rng.expovariate(1.0 / mean_len)))
        srv = envs[i].unwrapped.server
        started_pids.add(srv.proc.pid)
        started_dirs.add(str(srv.run_dir))
        sample_server(srv.proc.pid)
        if killed_pid[i] is not None and srv.proc.pid != killed_pid[i] and srv.alive():
            killed_pid[i], respawned[i] = None, True

    def do_step(i: int, action: int) -> tuple[bool, bool]:
        _, _, term, trunc, info = envs[i].step(action)
        c["steps"] += 1
        if trunc and info.get("truncation_reason") == "server_died":
            c["truncated_server_died"] += 1
        elif respawned[i]:  # a step served by the new server: this kill is survived
            respawned[i] = False
            c["kills_survived"] += 1
        return term, trunc

    def maybe_kill() -> None:
        if rng.random() >= args.kill_prob:
            return
        live = [j for j, e in enumerate(envs) if killed_pid[j] is None and not respawned[j]
                and e.unwrapped.server is not None and e.unwrapped.server.alive()]
        if not live:
            return
        j = rng.choice(live)
        pid = envs[j].unwrapped.server.proc.pid
        killed_pid[j] = pid
        os.killpg(pid, signal.SIGKILL)
        c["kills"] += 1

    def run_episode_step(i: int) -> None:
        maybe_kill()
        if left[i] <= 0:
            do_reset(i)
            return
        term, trunc = do_step(i, envs[i].action_space.sample())
        left[i] -= 1
        if term or trunc:
            left[i] = 0

    status = "ok"
    try:
        for i, e in enumerate(envs):
            e.action_space.seed(args.seed + i)
            do_reset(i)
        # warm-up (no kills): renderer JIT, first arenas, allocator high-water marks
        kp, args.kill_prob = args.kill_prob, 0.0
        while c["resets"] < args.envs * (args.warmup + 1):
            for i in range(args.envs):
                run_episode_step(i)
        args.kill_prob = kp
        gc.collect()
        fds_warm, rss_warm = fd_count(), rss_mb()
        base = dict(c)
        deaths0 = sum(e.unwrapped.server_deaths for e in envs)
        t0 = time.perf_counter()
        deadline = t0 + args.max_minutes * 60
        print(f"warm-up done in {t0 - t_start:.1f} s ({base['resets']} resets, "
              f"{base['steps']} steps); soaking {args.envs} env(s) to {args.resets} resets and "
              f"{args.steps} steps, kill-prob {args.kill_prob}", flush=True)
        next_print = t0 + 30
        while (c["resets"] - base["resets"] < args.resets
               or c["steps"] - base["steps"] < args.steps):
            i = rng.randrange(args.envs)
            run_episode_step(i)
            now = time.perf_counter()
            if now > next_print:
                next_print = now + 30
                print(f"  {now - t0:6.0f} s: {c['resets'] - base['resets']} resets, "
                      f"{c['steps'] - base['steps']} steps, {c['kills']} kills", flush=True)
            if now > deadline:
                status = "time limit"
                break
        for i in range(args.envs):  # confirm pending kills: reset onto a new server and step
            if killed_pid[i] is not None or envs[i].unwrapped.server is None:
                do_reset(i)
            do_step(i, 0)
        soak_wall = time.perf_counter() - t0
        gc.collect()
        fds_end, rss_end = fd_count(), rss_mb()
        respawns = sum(e.unwrapped.server_deaths for e in envs) - deaths0
    finally:
        for e in envs:
            e.close()
    envs.clear()
    gc.collect()
    time.sleep(0.5)
    fds1, rss1 = fd_count(), rss_mb()
    still_running = sorted(p for p in started_pids if running(p))
    dirs_left = sorted(d for d in started_dirs if os.path.exists(d))
    unreg_new = sorted(unregistered_servers() - procs0)
    dirs_new = sorted(temp_run_dirs() - dirs0)
    kills_unconfirmed = sum(p is not None for p in killed_pid) + sum(respawned)
    server_mem = []
    for pid, s in sorted(servers.items()):
        if s["warm"] is None or s["last"] is None:
            continue
        n = s["last"][0] - s["warm"][0]
        server_mem.append({
            "pid": pid, "resets_after_warmup": n,
            "rss_mb": [round(s["warm"][1], 1), round(s["last"][1], 1)],
            "rss_growth_mb": round(s["last"][1] - s["warm"][1], 2),
            "kb_per_reset": round(1024 * (s["last"][1] - s["warm"][1]) / n, 2) if n else None,
            "fds": [s["warm"][2], s["last"][2]], "fd_growth": s["last"][2] - s["warm"][2],
            "judged": n >= args.min_server_resets})
    judged = [m for m in server_mem if m["judged"]]
    server_growth = [m for m in judged if m["rss_growth_mb"] > args.max_server_growth_mb
                     or m["fd_growth"] > 0]
    fig: dict[str, Any] = {
        "env_id": args.env_id, "envs": args.envs, "cores": os.cpu_count(), "status": status,
        "kill_prob": args.kill_prob, "soak_wall_s": round(soak_wall, 1),
        "resets": c["resets"] - base["resets"], "steps": c["steps"] - base["steps"],
        "steps_per_s": round((c["steps"] - base["steps"]) / soak_wall, 1),
        "kills": c["kills"], "kills_survived": c["kills_survived"],
        "kills_not_confirmed": kills_unconfirmed,
        "respawns_observed": respawns,
        "truncations_server_died": c["truncated_server_died"],
        "respawns_during_reset": c["reset_respawns"],
        "servers_started": len(started_pids),
        "fds": {"before_envs": fds0, "after_warmup": fds_warm, "end_envs_open": fds_end,
                "after_close": fds1},
        "leaked_fds": fds1 - fds0, "fd_growth_while_open": fds_end - fds_warm,
        "leaked_processes": {"started_and_still_running": still_running,
                             "unregistered_minetestservers_new": unreg_new,
                             "zombie_children": zombie_children()},
        "leaked_run_dirs": {"started_and_still_present": dirs_left,
                            "new_mtsandbox_dirs_in_tmp": dirs_new},
        "rss_mb": {"after_warmup": round(rss_warm, 1), "end_envs_open": round(rss_end, 1),
                   "after_close": round(rss1, 1)},
        "rss_growth_mb": round(rss_end - rss_warm, 1),
        "servers": server_mem,
        "max_server_growth_mb": args.max_server_growth_mb,
        "servers_grown": [m["pid"] for m in server_growth],
    }
    lp, ld = fig["leaked_processes"], fig["leaked_run_dirs"]
    print(f"\nsoak: {fig['envs']} env(s), {fig['soak_wall_s']} s ({fig['cores']} cores), "
          f"{status}")
    print(f"  resets done            {fig['resets']}")
    print(f"  steps                  {fig['steps']}  ({fig['steps_per_s']} steps/s incl. resets "
          "and respawns)")
    print(f"  kills (SIGKILL group)  {fig['kills']}")
    print(f"  kills survived         {fig['kills_survived']}  (new live server + step after)")
    print(f"  respawns observed      {respawns}  ({c['truncated_server_died']} truncated "
          f"'server_died', {c['reset_respawns']} during reset); servers started "
          f"{len(started_pids)}")
    print(f"  leaked fds             {fig['leaked_fds']}  (before envs {fds0}, after close "
          f"{fds1}; open: warm-up {fds_warm} -> end {fds_end})")
    print(f"  leaked processes       {len(lp['started_and_still_running'])} of ours still "
          f"running, {len(lp['unregistered_minetestservers_new'])} new unregistered "
          f"minetestserver, {lp['zombie_children']} zombie children")
    print(f"  leaked run dirs        {len(ld['started_and_still_present'])} of "
          f"{len(started_dirs)} ours, {len(ld['new_mtsandbox_dirs_in_tmp'])} new "
          f"mtsandbox-* in {tempfile.gettempdir()}")
    print(f"  memory (RSS)           {rss_warm:.1f} MB after warm-up -> {rss_end:.1f} MB at end "
          f"({fig['rss_growth_mb']:+.1f} MB); {rss1:.1f} MB after close")
    for m in server_mem:
        print(f"  server {m['pid']:<8}        RSS {m['rss_mb'][0]:.1f} -> {m['rss_mb'][1]:.1f} MB "
              f"({m['rss_growth_mb']:+.1f} MB, {m['kb_per_reset']} KB/reset) and fds "
              f"{m['fds'][0]} -> {m['fds'][1]} over {m['resets_after_warmup']} resets after "
              f"its warm-up{'' if m['judged'] else ' (too few to judge)'}")
    if not judged:
        print(f"  no server served {args.min_server_resets} resets after its warm-up: server "
              "memory not judged")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(fig, indent=2))
    leaks = (fig["leaked_fds"] > 0 or lp["started_and_still_running"] or lp["zombie_children"]
             or ld["started_and_still_present"] or server_growth)
    return 0 if not leaks and c["kills_survived"] == c["kills"] else 1
