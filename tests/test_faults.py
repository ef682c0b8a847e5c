"""Fault tolerance: respawn after a server death, hung-server timeout, cleanup on every exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import pytest

import mtsandbox.envs
from mtsandbox.envs.server import ServerError, live_servers

ID = mtsandbox.envs.TREEPUNCH_IDS[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has no cmdline.
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read()
    except FileNotFoundError:
        return False


def test_dead_server_is_respawned_and_episode_truncated_with_reason():
    env = gym.make(ID, on_server_death="respawn")
    try:
        env.reset(seed=0)
        env.step(1)
        srv = env.unwrapped.server
        os.killpg(srv.proc.pid, signal.SIGKILL)
        _, r, term, trunc, info = env.step(1)
        assert trunc and not term and r == 0.0
        assert info["truncation_reason"] == "server_died"
        assert any(e["kind"] == "server_died" for e in info["events"])
        assert not srv.run_dir.exists()
        env.reset(seed=1)  # a fresh server
        assert env.unwrapped.server is not srv and env.unwrapped.server.alive()
        env.step(0)
        assert env.unwrapped.server_deaths == 1
    finally:
        env.close()


def test_hung_server_is_detected_by_timeout():
    env = gym.make(ID, reply_timeout_s=1.5)
    try:
        env.reset(seed=0)
        srv = env.unwrapped.server
        os.kill(srv.proc.pid, signal.SIGSTOP)
        t = time.monotonic()
        with pytest.raises(ServerError, match="no reply"):
            env.step(0)
        assert time.monotonic() - t < 10
    finally:
        env.close()
    assert not alive(srv.proc.pid)


CHILD = textwrap.dedent("""
    import sys, time, gymnasium as gym, mtsandbox.envs
    env = gym.make("ID_PLACEHOLDER")
    env.reset(seed=0)
    print(env.unwrapped.server.proc.pid, env.unwrapped.server.run_dir, flush=True)
    mode = sys.argv[1]
    if mode == "exception":
        raise RuntimeError("boom")
    if mode == "exit":
        sys.exit(0)
    time.sleep(60)
""".replace("ID_PLACEHOLDER", ID))


@pytest.mark.parametrize("mode,sig", [("exit", None), ("exception", None),
                                      ("sleep", signal.SIGINT), ("sleep", signal.SIGTERM),
                                      ("sleep", signal.SIGKILL)])
def test_no_orphan_server_on_any_exit_path(mode, sig):
    p = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    pid_s, run_dir = p.stdout.readline().split()
    pid = int(pid_s)
    assert alive(pid)
    if sig is not None:
        p.send_signal(sig)
    p.wait(timeout=90)  # exit under a loaded full suite: twice > 30 s here (session 25)
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), f"server {pid} outlived its controller ({mode}, {sig})"
    assert pid not in [s["pid"] for s in live_servers()]
    if sig != signal.SIGKILL:  # a SIGKILLed controller cannot remove its run dir
        assert not os.path.exists(run_dir)
