"""TreePunch environments against the real Minetest server."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import mtsandbox.envs
from mtsandbox.agents.scripted import TreeChopper
from mtsandbox.envs.bridge import ACTION_DTYPE, Bridge, ProtocolError
from mtsandbox.envs.server import MinetestServer, ServerConfig, ServerError

IDS = mtsandbox.envs.TREEPUNCH_IDS


def server_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "/usr/lib/minetest/minetestserver"],
                         capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_gymnasium_and_sb3(env_id):
    env = gym.make(env_id)
    try:
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=False)
    finally:
        env.close()
        env.close()  # closing twice is allowed


def test_render_rgb_array_and_extras():
    env = gym.make(IDS[0], render_mode="rgb_array", obs_extras=True, width=48, height=32)
    try:
        obs, info = env.reset(seed=3)
        assert obs["rgb"].shape == (32, 48, 3) and obs["rgb"].dtype == np.uint8
        assert env.observation_space.contains(obs)
        frame = env.render()
        assert frame.shape == (256, 256, 3) and frame.std() > 5
        for key in ("observed_reward", "hidden_performance", "events", "pose", "tree_in_view",
                    "dist_nearest_trunk"):
            assert key in info
    finally:
        env.close()


def rollout(env_id: str, seed: int, actions: list[int]) -> tuple[list[np.ndarray], list[float]]:
    env = gym.make(env_id)
    try:
        obs, _ = env.reset(seed=seed)
        frames, rewards = [obs], []
        for a in actions:
            obs, r, term, trunc, _ = env.step(a)
            frames.append(obs)
            rewards.append(r)
            if term or trunc:
                break
        return frames, rewards
    finally:
        env.close()


def test_determinism_across_fresh_servers():
    rng = np.random.default_rng(0)
    names = mtsandbox.envs.core.ACTIONS
    # Bias toward moving and punching so the episode changes the world.
    p = np.array([0.02, 0.3, 0.05, 0.05, 0.05, 0.1, 0.1, 0.05, 0.08, 0.05, 0.05, 0.1])
    actions = list(rng.choice(len(names), size=300, p=p / p.sum()))
    f1, r1 = rollout(IDS[1], 7, actions)
    f2, r2 = rollout(IDS[1], 7, actions)
    assert len(f1) == len(f2)
    assert r1 == r2
    assert all(np.array_equal(a, b) for a, b in zip(f1, f2, strict=True))
    assert not np.array_equal(f1[0], f1[-1])  # the agent did move
    f3, _ = rollout(IDS[1], 8, actions[:5])
    assert not np.array_equal(f1[0], f3[0])  # another seed, another arena


def test_scripted_chopper_gets_reward_and_events():
    env = gym.make(IDS[0])
    try:
        env.reset(seed=1)
        pol = TreeChopper(env)
        total, hidden, digs = 0.0, 0.0, []
        for _ in range(300):
            _, r, term, trunc, info = env.step(pol.act())
            total += r
            hidden += info["hidden_performance"]
            digs += [e for e in info["events"] if e["kind"] == "dig"]
            if term or trunc:
                break
        assert total >= 3
        assert hidden == total  # sparse task: paid exactly for the work done
        trunk_digs = [e for e in digs if e["node"] == "tree"]
        assert len(trunk_digs) == total
        assert all(e["body"] == "agent" and e["height"] >= 1 and e["tree"] >= 1
                   for e in trunk_digs)
    finally:
        env.close()


def my_server_pids() -> set[int]:
    """Server processes whose parent is this test process (other users' servers don't count)."""
    mine = set()
    for pid in server_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    mine.add(pid)
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return mine


def test_close_leaves_no_process_or_run_dir():
    env = gym.make(IDS[0])
    env.reset(seed=0)
    run_dir = env.unwrapped.server.run_dir
    pid = env.unwrapped.server.proc.pid
    assert run_dir.exists() and pid in server_pids()
    env.close()
    assert not run_dir.exists()
    assert pid not in server_pids()
    assert not my_server_pids()


def test_run_dir_of_a_sigkilled_controller_is_removed_at_the_next_start(tmp_path):
    import sys
    import time

    code = ("import sys, time; from mtsandbox.envs.server import MinetestServer, ServerConfig; "
            f"s = MinetestServer(ServerConfig(run_root={str(tmp_path)!r})); "
            "print(s.run_dir, s.proc.pid, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run_dir, server_pid = child.stdout.readline().split()
    child.kill()  # SIGKILL: no atexit, no finally, nothing cleans up
    child.wait()
    for _ in range(100):  # the server follows its owner (PDEATHSIG / the socket's EOF)
        if int(server_pid) not in server_pids():
            break
        time.sleep(0.1)
    assert Path(run_dir).is_dir()  # left behind
    kept = tmp_path / "mtsandbox-kept"
    kept.mkdir()
    (kept / "owner.json").write_text('{"owner_pid": 1, "owner_pid_start": -1, "keep": true}')
    unknown = tmp_path / "mtsandbox-unknown"  # no owner record: not ours to judge
    unknown.mkdir()
    srv = MinetestServer(ServerConfig(run_root=str(tmp_path)))
    try:
        assert not Path(run_dir).exists()
        assert kept.is_dir() and unknown.is_dir() and srv.run_dir.is_dir()
    finally:
        srv.close()


def _server_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS")) / 1024


def test_server_memory_is_flat_over_soft_resets():
    """A new VoxelManip per reset grew the server ~245 KB per reset (~100 MB over these 400);
    ``mtsandbox bench soak`` measures 10,000 resets (results/bench/soak_server_memory.json)."""
    env = gym.make("MinetestSandbox/OffSwitch-v1")
    try:
        for i in range(60):  # warm-up: allocator high-water marks, the first GC cycles
            env.reset(seed=i)
        pid = env.unwrapped.server.proc.pid
        before = _server_rss_mb(pid)
        for i in range(400):
            env.reset(seed=100 + i)
            env.step(0)
        grown = _server_rss_mb(pid) - before
    finally:
        env.close()
    assert grown < 5.0, f"server RSS grew {grown:.1f} MB over 400 resets"


def test_killed_server_gives_clear_error_not_hang():
    env = gym.make(IDS[0])
    try:
        env.reset(seed=0)
        env.step(0)
        srv = env.unwrapped.server
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(timeout=10)
        with pytest.raises(ServerError, match=r"exited|closed"):
            for _ in range(5):
                env.step(1)
    finally:
        env.close()
    assert not srv.run_dir.exists()


def test_protocol_errors_are_reported_and_server_survives():
    with MinetestServer(ServerConfig()) as srv:
        br = Bridge(srv)
        with pytest.raises(ProtocolError, match="step before reset"):
            br.step(np.zeros(1, ACTION_DTYPE))
        br.reset({"seed": 1})
        with pytest.raises(ProtocolError, match="expected 1 body actions"):
            br.step(np.zeros(2, ACTION_DTYPE))
        with pytest.raises(ProtocolError, match="unknown message type"):
            br._request(b"Z", "z")
        with pytest.raises(ProtocolError, match="unknown node"):
            br.reset({"seed": 1, "punches": {"no_such_node": 2}})
        assert br.ping(b"abc") == b"abc"
        assert br.step(np.zeros(1, ACTION_DTYPE)).step == 1


def test_dead_server_on_start_reports_log(tmp_path):
    cfg = ServerConfig(extra_conf={"secure.trusted_mods": ""})  # mod refuses to load
    with pytest.raises(ServerError, match="exited") as e:
        MinetestServer(cfg)
    assert "trusted_mods" in str(e.value)


def test_bad_options_fail_with_one_clear_line():
    with pytest.raises(TypeError, match=r"unknown environment option 'n_treez'"):
        gym.make(IDS[0], n_treez=3)
    with pytest.raises(ValueError, match="unknown extra action"):
        gym.make(IDS[0], extra_actions=("fly",))
    env = gym.make(IDS[0])
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="outside Discrete"):
            env.step(99)
    finally:
        env.close()


def test_physics_collision_and_jump():
    """Walking into a trunk stops at its face (x untouched); a jump rises about one node."""
    with MinetestServer(ServerConfig()) as srv:
        br = Bridge(srv)
        meta = br.reset({"seed": 1}).meta
        tree = meta["trees"][0]
        tx, tz = int(tree["x"]), int(tree["z"])
        spawn = [tx, 0.5, tz - 3]
        br.reset({"seed": 1, "bodies": [{"name": "agent", "pos": spawn, "yaw": 0}]})
        jump = np.zeros(1, ACTION_DTYPE)
        jump["flags"] = 1
        ys = [float(br.step(jump).bodies[0]["y"])]
        ys += [float(br.step(np.zeros(1, ACTION_DTYPE)).bodies[0]["y"]) for _ in range(30)]
        assert 1.0 < max(ys) - 0.5 < 1.5  # clears one node, not two
        assert ys[-1] == pytest.approx(0.5, abs=1e-5)  # landed back on the ground
        fwd = np.zeros(1, ACTION_DTYPE)
        fwd["fwd"] = 1
        for _ in range(30):
            b = br.step(fwd).bodies[0]
        assert b["z"] == pytest.approx(tz - 0.5 - 0.3, abs=1e-5)
        assert b["x"] == pytest.approx(tx, abs=1e-5)
        assert b["look_p"] == 3 and b["look_dist"] < 1.0  # facing the trunk


def test_torch_render_path_matches_numba_in_the_env():
    """The torch renderer (what CUDA users get with render_device="cuda") sees the same
    scene as the numba one, across a reset and node changes."""
    rng = np.random.default_rng(1)
    actions = list(rng.integers(0, 12, size=80))
    outs = {}
    for dev in ("cpu", "torch-cpu"):
        env = gym.make(IDS[0], render_device=dev)
        try:
            env.reset(seed=4)
            sems = []
            for a in actions:
                env.step(int(a))
                sems.append(env.unwrapped.last_semantic.copy())
            env.reset(seed=5)
            sems.append(env.unwrapped.last_semantic.copy())
            outs[dev] = np.stack(sems)
        finally:
            env.close()
    agree = (outs["cpu"] == outs["torch-cpu"]).mean()
    assert agree >= 0.99, agree


def test_a_step_that_changes_nothing_reuses_the_last_frame_exactly():
    env = gym.make(f"{mtsandbox.envs.NAMESPACE}/TreePunch-v0")
    try:
        env.reset(seed=1)
        u = env.unwrapped
        r = u._get_renderer()
        calls = []
        orig = r.render
        r.render = lambda *a, **k: calls.append(1) or orig(*a, **k)
        names = u.get_action_meanings()
        o1 = env.step(names.index("noop"))[0]
        n1 = len(calls)
        o2 = env.step(names.index("noop"))[0]  # nothing moved, no node changed
        assert len(calls) == n1 and np.array_equal(o1, o2) and o1 is not o2
        o3 = env.step(names.index("turn_left"))[0]
        assert len(calls) == n1 + 1 and not np.array_equal(o2, o3)
        fresh = orig(u.world.vox, u.world.origin, *_eye(u), bodies=u._bodies_array(),
                     exclude_body=0).rgb
        assert np.array_equal(o3, fresh)  # the cache never serves a stale frame
    finally:
        env.close()


def _eye(u):
    from mtsandbox.envs.shared import EYE_HEIGHT

    x, y, z, yaw, pitch = (float(v) for v in u.world.poses[0])
    return np.array([x, y + EYE_HEIGHT, z]), yaw, pitch
