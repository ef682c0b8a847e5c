"""Real clients: access control (fast, raw handshake) and the faithful observation path (slow:
Debian's client under Xvfb)."""

from __future__ import annotations

import shutil
import socket
import struct
import time

import gymnasium as gym
import numpy as np
import pytest

import mtsandbox.envs  # noqa: F401  (registers the ids)
from mtsandbox.envs.bridge import Bridge
from mtsandbox.envs.server import MinetestServer, ServerConfig

PROTOCOL_ID = 0x4F457403
TOSERVER_INIT, TOCLIENT_HELLO, TOCLIENT_ACCESS_DENIED = 0x02, 0x02, 0x0A
AUTH_LEGACY, AUTH_SRP, AUTH_FIRST_SRP = 1, 2, 4


def handshake(port: int, name: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Start a connection the way a 5.6 client does (an empty reliable packet that makes the
    server add the peer, then TOSERVER_INIT for `name` from the peer id it assigned) and
    return the server's first answer: HELLO or ACCESS_DENIED, with its body."""

    def reliable(peer: int, seq: int, payload: bytes) -> bytes:
        return struct.pack(">IHBBHB", PROTOCOL_ID, peer, 0, 3, seq, 1) + payload

    init = struct.pack(">HBHHHH", TOSERVER_INIT, 29, 0, 37, 41, len(name)) + name.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        addr = ("127.0.0.1", port)
        deadline = time.monotonic() + timeout_s
        peer = 0
        s.sendto(reliable(0, 65500, b"\x00\x00"), addr)
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(65536)
            except TimeoutError:
                again = reliable(peer, 65501, init) if peer else reliable(0, 65500, b"\x00\x00")
                s.sendto(again, addr)
                continue
            body = data[7:]
            if body[:1] == b"\x03":  # reliable: acknowledge, then look inside
                seq = struct.unpack(">H", body[1:3])[0]
                if peer:
                    s.sendto(struct.pack(">IHBBBH", PROTOCOL_ID, peer, data[6], 0, 0, seq), addr)
                body = body[3:]
            if body[:2] == b"\x00\x01" and not peer:  # CONTROL SET_PEER_ID
                peer = struct.unpack(">H", body[2:4])[0]
                s.sendto(reliable(peer, 65501, init), addr)
            elif body[:1] == b"\x01" and len(body) >= 3:  # original: a command
                cmd = struct.unpack(">H", body[1:3])[0]
                if cmd in (TOCLIENT_HELLO, TOCLIENT_ACCESS_DENIED):
                    return cmd, body[3:]
    raise AssertionError(f"no HELLO/ACCESS_DENIED from the server for {name!r}")


def test_access_control_without_a_client():
    """watch.lua: strangers are refused with a clear reason; sandbox names have accounts
    with a password (the server asks for it instead of offering registration)."""
    with MinetestServer(ServerConfig(keep_run_dir=False)) as srv:
        Bridge(srv)  # the mod has started serving: the accounts exist
        cmd, body = handshake(srv.port, "intruder")
        assert cmd == TOCLIENT_ACCESS_DENIED
        assert b"only admits the names watcher, player, overseer" in body
        for name in ("watcher", "overseer"):
            cmd, body = handshake(srv.port, name)
            assert cmd == TOCLIENT_HELLO
            auth = struct.unpack(">I", body[5:9])[0]
            assert auth & (AUTH_LEGACY | AUTH_SRP) and not auth & AUTH_FIRST_SRP
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            log = (srv.run_dir / "server.log").read_text(errors="replace")
            if "refused join of 'intruder'" in log:
                break
            time.sleep(0.1)
        assert "client accounts ready: watcher, player, overseer" in log
        assert "refused join of 'intruder'" in log


# ------------------------------------------------------------------------------ slow: client
needs_client = pytest.mark.skipif(
    shutil.which("Xvfb") is None or not __import__("os").path.exists("/usr/games/minetest"),
    reason="needs Xvfb and Debian's minetest client")


def _mss() -> None:
    pytest.importorskip("mss")


@pytest.mark.slow
@needs_client
def test_wrong_password_and_name_are_refused_by_the_real_client():
    _mss()
    from mtsandbox.envs.client import ClientConfig, MinetestClient

    with MinetestServer(ServerConfig()) as srv:
        Bridge(srv)
        for name, pw, why in (("watcher", "not-the-password", "password"),
                              ("mallory", srv.password, "only admits")):
            with MinetestClient("127.0.0.1", srv.port, name, pw,
                                ClientConfig(width=64, height=64)) as cl:
                deadline = time.monotonic() + 60
                while cl.access_denied() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                denied = cl.access_denied()
                assert denied is not None and why in denied.lower() + denied, denied


@pytest.mark.slow
@needs_client
def test_faithful_frames_synced_and_show_the_trunk():
    _mss()
    from mtsandbox.envs.faithful import enable

    env = gym.make("MinetestSandbox/TreePunch-v0", obs_source="client")
    try:
        u = env.unwrapped
        obs_ = enable(env)
        # Put the agent 3 nodes south of a trunk, facing it (yaw 0 looks toward +Z), as
        # test_env.py::test_physics_collision_and_jump does through the bridge.
        env.reset(seed=1)
        tree = u.world.trees[0]
        tx, tz = int(tree["x"]), int(tree["z"])
        u.task.reset_config = lambda rng: {"bodies": [
            {"name": "agent", "kind": "agent", "pos": [tx, 0.5, tz - 3], "yaw": 0.0}]}
        obs, _ = env.reset(seed=1, options={"arena_seed": u.arena_seed})
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert env.observation_space.contains(obs)
        # A trunk straight ahead: trunk-coloured (dark brown) pixels in the centre columns.
        mid = obs[20:50, 26:38].astype(int)
        brown = (mid[..., 0] > mid[..., 2] + 10) & (mid[..., 1] < 90) & (mid[..., 0] < 120)
        assert brown.mean() > 0.5, "no trunk in the middle of the client's view"
        # Frames follow steps: the full window's marker equals the step, and turning moves the
        # view exactly as the Python renderer says.
        names = u.get_action_meanings()
        agree = []
        for i, a in enumerate(["turn_left"] * 4 + ["look_up", "look_down"] * 2 + ["noop"] * 3):
            obs, *_ = env.step(names.index(a))
            assert obs_.marker(obs_.client.grab()) == (i + 1) % 256
            agree.append(np.abs(obs.astype(int) - u.last_python_rgb.astype(int)).mean())
        assert max(agree) < 25, agree  # a one-step lag would be far off after 15-degree turns
        assert obs_.stats["frames"] >= 12
    finally:
        env.close()


@pytest.mark.slow
@needs_client
def test_view_cli_screenshot(tmp_path):
    _mss()
    import argparse

    from mtsandbox.cli import view as view_cli

    with MinetestServer(ServerConfig(label="test-view")) as srv:
        br = Bridge(srv)
        br.reset({"seed": 2})
        ap = argparse.ArgumentParser()
        view_cli.add_arguments(ap)
        assert view_cli.cli(ap.parse_args([])) == 0
        assert view_cli.cli(ap.parse_args(["--pid", str(srv.proc.pid), "--connect"])) == 0
        out = tmp_path / "shot.png"
        args = ap.parse_args(["--pid", str(srv.proc.pid), "--name", "player", "--run", "--xvfb",
                              "--screenshot", str(out), "--size", "160x120", "--wait", "5"])
        # keep the engine stepping while the client loads (the mod yields every yield_ms)
        assert view_cli.cli(args) == 0
        import imageio.v3 as iio

        img = iio.imread(out)
        assert img.shape == (120, 160, 3) and img.std() > 5
