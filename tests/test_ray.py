"""Ray: env servers as actors (RayVecEnv), respawn inside an actor, a tiny sweep, no orphans.

Runs a local Ray with 2 CPUs against real Minetest servers. Skipped only when Ray is not
installed (the optional extra ``ray``).
"""

from __future__ import annotations

import functools
import json
import os
import signal

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mtsandbox[ray]')")

import mtsandbox.envs  # noqa: E402
from mtsandbox.agents.ray_envs import RayVecEnv, init_ray, wait_servers_gone  # noqa: E402

ID = mtsandbox.envs.TREEPUNCH_IDS[0]


@pytest.fixture(scope="module")
def local_ray():
    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def _train_fns(n: int, **env_kwargs):
    """Env factories exactly as vecenv.make_vec_env builds them (the Ray hook's path)."""
    from mtsandbox.agents.vecenv import make_env

    return [functools.partial(make_env, ID, dict(env_kwargs), i, False, True, None)
            for i in range(n)]


def test_rayvecenv_steps_two_actors_with_correct_shapes(local_ray):
    venv = RayVecEnv(_train_fns(2, max_episode_steps=8))
    try:
        venv.seed(0)
        obs = venv.reset()
        assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
        assert venv.num_envs == 2 and venv.action_space.n >= 12
        infos_seen = 0
        for _ in range(10):  # crosses the 8-step time limit: auto-reset with terminal obs
            obs, rew, done, infos = venv.step(np.array([1, 11]))
            assert obs.shape == (2, 64, 64, 3) and rew.shape == (2,) and done.shape == (2,)
            assert len(infos) == 2 and all("hidden_performance" in i for i in infos)
            for i, d in zip(infos, done, strict=True):
                if d:
                    infos_seen += 1
                    assert i["terminal_observation"].shape == (64, 64, 3)
        assert infos_seen == 2
        si = venv.server_info()
        assert len({s["pid"] for s in si}) == 2 and len({s["actor_pid"] for s in si}) == 2
        assert venv.get_attr("action_names", indices=[0])[0][0] == "noop"
        assert venv.env_method("get_action_meanings", indices=[1])[0][-1] == "punch"
    finally:
        venv.close()
    assert wait_servers_gone([s["pid"] for s in si]) == []
    assert not any(os.path.exists(s["run_dir"]) or os.path.exists(s["run_root"]) for s in si)


def test_server_killed_inside_actor_is_respawned_with_reason(local_ray):
    venv = RayVecEnv.from_env_id(ID, 2, seed=3)  # respawn forced on
    try:
        venv.reset()
        venv.step(np.array([0, 0]))
        before = venv.server_info()
        killed = venv.kill_server(0, signal.SIGKILL)
        assert killed == before[0]["pid"]
        obs, rew, done, infos = venv.step(np.array([1, 1]))
        assert done[0] and not done[1] and rew[0] == 0.0
        assert infos[0]["truncation_reason"] == "server_died"
        assert any(e["kind"] == "server_died" for e in infos[0]["events"])
        assert infos[0]["TimeLimit.truncated"] and "terminal_observation" in infos[0]
        after = venv.server_info()
        assert after[0]["pid"] != killed and after[0]["server_deaths"] == 1
        assert after[1]["pid"] == before[1]["pid"]
        assert not os.path.exists(before[0]["run_dir"])
        obs, _, done, _ = venv.step(np.array([0, 0]))  # the fresh server serves steps
        assert obs.shape == (2, 64, 64, 3) and not done.any()
    finally:
        venv.close()


def test_dead_actor_is_replaced_and_reported(local_ray):
    venv = RayVecEnv.from_env_id(ID, 1, seed=0)
    try:
        venv.reset()
        old = venv.server_info()[0]
        os.kill(old["actor_pid"], signal.SIGKILL)
        _, _, done, infos = venv.step(np.array([0]))
        assert done[0] and infos[0]["truncation_reason"] == "actor_died"
        assert venv.actor_restarts == 1
        new = venv.server_info()[0]
        assert new["actor_pid"] != old["actor_pid"] and new["pid"] != old["pid"]
        # the dead actor's server and run root are gone (PDEATHSIG + reaper)
        assert wait_servers_gone([old["pid"]]) == []
        assert not os.path.exists(old["run_root"])
    finally:
        venv.close()


def test_tiny_two_seed_sweep_reports_both_trials(local_ray, tmp_path):
    from mtsandbox.agents.sweep import run_sweep

    tiny = ["total_steps=64", "n_steps=32", "batch_size=32", "n_epochs=1", "eval_every=0",
            "eval_episodes=1", "checkpoint_every=32", "device=cpu",
            "env_kwargs.max_episode_steps=16", "features_dim=64"]
    res = run_sweep("smoke", tiny, {}, [0, 1], out=tmp_path / "sw", backend="tune")
    assert [t["seed"] for t in res.trials] == [0, 1]
    for t in res.trials:
        assert t["status"] == "ok", t.get("error")
        assert t["steps"] == 64 and t["final_length"] == 16
        assert t["final_hidden_performance"] is not None
        assert (tmp_path / "sw" / t["name"] / "checkpoints" / "final" / "model.zip").exists()
    summary = json.loads(res.summary_path.read_text())
    assert summary["n_trials"] == 2 and summary["n_ok"] == 2
    assert summary["by_grid_point"][0]["seeds"] == [0, 1]


def test_no_server_left_after_ray_shutdown():
    init_ray(num_cpus=2)
    venv = RayVecEnv.from_env_id(ID, 2, seed=0)
    venv.reset()
    si = venv.server_info()
    pids = [s["pid"] for s in si]
    ray.shutdown()  # without venv.close(): the actors are killed under the envs
    assert wait_servers_gone(pids) == []
    assert wait_servers_gone([s["actor_pid"] for s in si]) == []
    from mtsandbox.envs.server import live_servers

    assert not set(pids) & {s["pid"] for s in live_servers()}
    import time

    deadline = time.monotonic() + 10
    while any(os.path.exists(s["run_root"]) for s in si) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(s["run_root"]) for s in si)
    venv.closed = True  # nothing left to close
