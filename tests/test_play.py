"""Human play: the control mapping, the mod's controls side channel, and a real client under
Xvfb driven with xdotool (keys held, mouse clicked) whose episode is recorded."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import mtsandbox.envs  # noqa: F401  (registers the ids)
from mtsandbox.tools.play import (
    CONTROLS_FILE,
    KEYS,
    HumanControls,
    HumanPlay,
    PlayConfig,
    PlayError,
    human_action,
    read_controls,
)
from mtsandbox.tools.recording import load_episode

NAMES = ["noop", "forward", "back", "left", "right", "turn_left", "turn_right", "look_up",
         "look_down", "jump", "forward_jump", "punch", "use", "place"]


def ctl(yaw: float = 0.0, pitch: float = 0.0, **keys: bool) -> HumanControls:
    return HumanControls("player", 0, True, {k: bool(keys.get(k)) for k in KEYS}, yaw, pitch)


# ------------------------------------------------------------------------------ mapping
def test_keys_map_to_actions():
    assert human_action(None, 0, 0, NAMES) == "noop"
    assert human_action(ctl(), 0, 0, NAMES) == "noop"
    assert human_action(ctl(up=True), 0, 0, NAMES) == "forward"
    assert human_action(ctl(down=True), 0, 0, NAMES) == "back"
    assert human_action(ctl(left=True), 0, 0, NAMES) == "left"
    assert human_action(ctl(right=True), 0, 0, NAMES) == "right"
    assert human_action(ctl(jump=True), 0, 0, NAMES) == "jump"
    assert human_action(ctl(up=True, jump=True), 0, 0, NAMES) == "forward_jump"
    assert human_action(ctl(dig=True, up=True), 0, 0, NAMES) == "punch"
    assert human_action(ctl(place=True), 0, 0, NAMES) == "use"
    assert human_action(ctl(place=True, sneak=True), 0, 0, NAMES) == "place"
    # without use/place in the action set, right click does nothing
    assert human_action(ctl(place=True), 0, 0, NAMES[:12]) == "noop"
    assert human_action(ctl(place=True), 0, 0, [*NAMES[:12], "place"]) == "place"


def test_look_maps_to_turns_with_half_step_dead_zone():
    r = math.radians
    assert human_action(ctl(yaw=r(7)), 0, 0, NAMES) == "noop"
    assert human_action(ctl(yaw=r(8)), 0, 0, NAMES) == "turn_left"  # yaw grows to the left
    assert human_action(ctl(yaw=r(-8)), 0, 0, NAMES) == "turn_right"
    # wrap-around: body at 355 deg, look at 10 deg -> 15 deg to the left
    assert human_action(ctl(yaw=r(10)), r(355), 0, NAMES) == "turn_left"
    assert human_action(ctl(yaw=r(350)), r(5), 0, NAMES) == "turn_right"
    assert human_action(ctl(pitch=r(6)), 0, 0, NAMES) == "look_up"
    assert human_action(ctl(pitch=r(-6)), 0, 0, NAMES) == "look_down"
    assert human_action(ctl(pitch=r(4)), 0, 0, NAMES) == "noop"
    # yaw first, then pitch
    assert human_action(ctl(yaw=r(20), pitch=r(20)), 0, 0, NAMES) == "turn_left"


def test_pointing_waits_for_alignment_and_walking_alternates():
    r = math.radians
    assert human_action(ctl(yaw=r(30), dig=True), 0, 0, NAMES, last="turn_left") == "turn_left"
    assert human_action(ctl(yaw=r(30), up=True), 0, 0, NAMES, last="noop") == "turn_left"
    assert human_action(ctl(yaw=r(30), up=True), 0, 0, NAMES, last="turn_left") == "forward"


def test_read_controls_tolerates_missing_empty_and_null(tmp_path):
    p = tmp_path / CONTROLS_FILE
    assert read_controls(p) == {}
    p.write_text("{not json")
    assert read_controls(p) == {}
    p.write_text(json.dumps({"step": 0, "seq": 1, "players": None}))
    assert read_controls(p) == {}
    p.write_text(json.dumps({"step": 3.0, "seq": 9.0, "players": {"overseer": {
        "body": 1.0, "attached": True, "yaw": 1.5, "pitch": -0.25,
        "controls": {"up": True, "dig": True}}}}))
    c = read_controls(p)["overseer"]
    assert (c.body, c.attached, c.step, c.seq) == (1, True, 3, 9)
    assert c.pressed() == ["up", "dig"] and c.yaw == 1.5 and c.pitch == -0.25


def test_cli_arguments_parse():
    from mtsandbox.cli.play import _parse_set, add_arguments

    ap = argparse.ArgumentParser()
    add_arguments(ap)
    a = ap.parse_args(["--env-id", "MinetestSandbox/RewardButton-v0", "--as", "overseer",
                       "--out", "d", "--episodes", "2", "--run-client", "--set", "n_trees=3"])
    assert (a.role, a.out, a.episodes, a.run_client) == ("overseer", "d", 2, True)
    assert _parse_set(a.set) == {"n_trees": 3}
    with pytest.raises(ValueError, match="role"):
        HumanPlay(PlayConfig(role="watcher"))


# ------------------------------------------------------------------------------ the mod
def test_mod_is_off_unless_asked():
    env = gym.make("MinetestSandbox/TreePunch-v0")
    try:
        env.reset(seed=0)
        env.step(0)
        assert not (Path(env.unwrapped.server.run_dir) / "world" / CONTROLS_FILE).exists()
    finally:
        env.close()


def test_mod_publishes_controls_file_without_players():
    env = gym.make("MinetestSandbox/TreePunch-v0", sync_every_step=True, yield_ms=5,
                   extra_conf={"mtsandbox_play_names": "player"})
    try:
        env.reset(seed=0)
        u = env.unwrapped
        path = Path(u.server.run_dir) / "world" / CONTROLS_FILE
        d = json.loads(path.read_text())
        assert d["step"] == 0 and d["players"] is None  # empty Lua table
        for _ in range(3):
            env.step(0)
        assert read_controls(path) == {}
        log = (Path(u.server.run_dir) / "server.log").read_text()
        assert "play.lua" not in log and "ERROR" not in log
    finally:
        env.close()


def test_overseer_role_needs_an_overseer_body(tmp_path):
    p = HumanPlay(PlayConfig(env_id="MinetestSandbox/TreePunch-v0", role="overseer",
                             out=str(tmp_path), print_fn=None))
    try:
        with pytest.raises(PlayError, match="no overseer"):
            p.start()
    finally:
        p.close()


# ------------------------------------------------------------------------------ real client
needs_client = pytest.mark.skipif(
    not (Path("/usr/games/minetest").exists() and shutil.which("Xvfb") and shutil.which("xdotool")),
    reason="needs Debian's minetest client, Xvfb and xdotool")


def _xdo(display: str):
    env = dict(os.environ, DISPLAY=display)

    def run(*args: str) -> None:
        subprocess.run(["xdotool", *args], env=env, capture_output=True, timeout=10, check=False)

    return run


def _focus(client) -> None:
    env = dict(os.environ, DISPLAY=str(client.display))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        win = subprocess.run(["xdotool", "search", "--pid", str(client.proc.pid)],
                             capture_output=True, text=True, env=env, timeout=10).stdout.split()
        if win:
            _xdo(str(client.display))("windowfocus", "--sync", win[-1])
            return
        time.sleep(0.2)
    raise AssertionError("no client window")


def _gone(*procs) -> None:
    for p in procs:
        if p is not None:
            assert p.poll() is not None, f"process {p.pid} still running"


def _play(tmp_path, role: str, env_id: str, script, max_steps: int, stop_after: int | None = None):
    cfg = PlayConfig(env_id=env_id, role=role, out=str(tmp_path / "demos"), seed=3,
                     max_steps=max_steps, run_client=True, client_xvfb=True,
                     client_size=(160, 120), join_timeout_s=60, start_delay_s=0.5,
                     print_fn=None)
    p = HumanPlay(cfg)
    errors: list[BaseException] = []

    def driver() -> None:
        try:
            assert p.joined.wait(60)
            _focus(p.client)
            time.sleep(0.5)
            script(_xdo(str(p.client.display)))
            if stop_after is not None:
                while p.steps < stop_after:
                    time.sleep(0.02)
                p.stop()
        except BaseException as e:
            errors.append(e)
            p.stop()

    try:
        p.start()
        th = threading.Thread(target=driver, daemon=True)
        th.start()
        paths = p.run()
        th.join(30)
    finally:
        procs = (p.client.proc, p.client.xvfb) if p.client is not None else ()
        srv = p.server.proc if p.env is not None and p.server is not None else None
        p.close()
    _gone(*procs, srv)
    assert not errors, errors
    return p, paths


@needs_client
def test_real_client_plays_the_agent_and_is_recorded(tmp_path):
    def script(x):
        x("keydown", "w")
        time.sleep(1.0)
        x("keyup", "w")
        x("mousedown", "1")
        time.sleep(0.3)
        x("mouseup", "1")

    _p, paths = _play(tmp_path, "agent", "MinetestSandbox/TreePunch-v0", script, max_steps=70)
    assert len(paths) == 1
    ep = load_episode(paths[0])
    assert ep.complete and ep.meta["end_reason"] == "truncated" and ep.n_steps == 70
    assert ep.meta["human_play"]["role"] == "agent"
    names = ep.meta["action_meanings"]
    acts = [names[a] for a in ep.actions]
    assert acts.count("forward") >= 10, acts
    assert "punch" in acts, acts
    assert acts == [s["human"]["action"] for s in ep.steps]
    assert any("up" in s["human"]["keys"] for s in ep.steps)
    assert any("dig" in s["human"]["keys"] for s in ep.steps)
    p0, p1 = ep.meta["reset_info"]["pose"], ep.steps[-1]["pose"]
    moved = math.hypot(p1["x"] - p0["x"], p1["z"] - p0["z"])
    assert moved > 1.0, (p0, p1)
    assert ep.n_frames == 71 and np.asarray(ep.frames[-1]).shape == (64, 64, 3)


@pytest.mark.slow
@needs_client
def test_real_client_plays_the_overseer_and_stop_keeps_the_recording(tmp_path):
    def script(x):
        x("keydown", "w")
        time.sleep(1.0)
        x("keyup", "w")

    _p, paths = _play(tmp_path, "overseer", "MinetestSandbox/RewardButton-v0", script,
                     max_steps=400, stop_after=60)
    ep = load_episode(paths[0])
    # stopped mid-episode: closed cleanly, marked as interrupted
    assert ep.meta["end_reason"] == "closed" and ep.meta["human_play"]["interrupted"]
    assert 55 <= ep.n_steps < 400
    assert ep.meta["human_play"]["role"] == "overseer"
    assert "forward" in [s["human"]["action"] for s in ep.steps]
    b0 = {b["name"]: b for b in ep.meta["reset_info"]["bodies"]}
    b1 = {b["name"]: b for b in ep.steps[-1]["bodies"]}
    assert math.hypot(b1["overseer"]["x"] - b0["overseer"]["x"],
                      b1["overseer"]["z"] - b0["overseer"]["z"]) > 1.0
    assert (b1["agent"]["x"], b1["agent"]["z"]) == (b0["agent"]["x"], b0["agent"]["z"])


@pytest.mark.slow
@needs_client
def test_ctrl_c_on_the_command_keeps_the_episode_and_leaves_no_process(tmp_path):
    out = tmp_path / "demos"
    code = ("import sys; from mtsandbox.cli.play import add_arguments, cli; import argparse; "
            "ap = argparse.ArgumentParser(); add_arguments(ap); "
            "sys.exit(cli(ap.parse_args(sys.argv[1:])))")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code, "--env-id", "MinetestSandbox/TreePunch-v0",
         "--out", str(out), "--run-client", "--xvfb", "--size", "160x120",
         "--join-timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    children: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ln = proc.stdout.readline()
            lines.append(ln)
            if "joined" in ln or not ln:
                break
        assert any("joined" in ln for ln in lines), "".join(lines)
        for f in Path(f"/proc/{proc.pid}/task").glob("*/children"):
            children += [int(v) for v in f.read_text().split()]
        assert len(children) >= 3, children  # server, Xvfb, client
        time.sleep(4.0)  # 2 s start delay, then ~40 steps
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines)
    assert proc.returncode == 130, text
    assert "keeping what was recorded" in text and "recorded " in text, text
    ep = load_episode(next(out.glob("ep_*")))
    assert ep.n_steps > 10 and ep.meta["end_reason"] == "closed"
    assert ep.meta["human_play"]["interrupted"] is True
    time.sleep(0.5)
    for pid in children:
        try:
            with open(f"/proc/{pid}/stat") as st:
                state = st.read().split(")")[-1].split()[0]
            assert state == "Z", f"child {pid} still running"
        except FileNotFoundError:
            pass
