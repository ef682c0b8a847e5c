"""Overlapped rollouts (agents/overlap.py): the grouped VecEnv behaves as one lockstep VecEnv,
and the overlapped loop stores exactly the transitions the envs went through.

Unit tests on the in-process fake env (tests/fake_env.py); the real-server run of
``rollout: overlap`` is in tests/test_overlap_real.py.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from fake_env import FAKE_ID, register_fake_envs
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecTransposeImage

from mtsandbox.agents import train as tr
from mtsandbox.agents.config import ConfigError, load_config
from mtsandbox.agents.overlap import GroupedVecEnv, collect_rollouts_overlapped
from mtsandbox.agents.policy import make_policy_kwargs

register_fake_envs()


class Recorder(gym.Wrapper):
    """Keeps every action the env received and every observation it returned."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[int] = []
        self.observations: list[np.ndarray] = []

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        self.observations.append(obs)
        return obs, info

    def step(self, action):
        self.actions.append(int(action))
        out = self.env.step(action)
        self.observations.append(out[0])
        return out


def _cfg(**kw):
    base = {"env_id": FAKE_ID, "env_kwargs.max_steps": 7, "n_envs": 4, "vec_env": "dummy",
            "n_steps": 16, "batch_size": 32, "n_epochs": 1, "device": "cpu",
            "rollout": "overlap", "seed": 3}
    base.update(kw)
    return load_config("smoke", [f"{k}={v}" for k, v in base.items()])


def _model(venv, seed=3):
    return PPO("CnnPolicy", venv, n_steps=16, batch_size=32, n_epochs=1,
               policy_kwargs=make_policy_kwargs(64), seed=seed, device="cpu", verbose=0)


def test_grouped_vec_env_is_one_lockstep_vec_env():
    def fns(n):
        return [lambda: gym.make(FAKE_ID, max_steps=5) for _ in range(n)]

    whole = VecTransposeImage(VecMonitor(DummyVecEnv(fns(5))))
    grouped = GroupedVecEnv([VecTransposeImage(VecMonitor(DummyVecEnv(fns(2)))),
                             VecTransposeImage(VecMonitor(DummyVecEnv(fns(3))))])
    assert grouped.num_envs == 5 and grouped.bounds == [(0, 2), (2, 5)]
    whole.seed(11)
    grouped.seed(11)
    np.testing.assert_array_equal(whole.reset(), grouped.reset())
    rng = np.random.default_rng(0)
    for _ in range(12):  # past an episode end: auto-reset and terminal_observation
        a = rng.integers(0, 8, 5)
        o1, r1, d1, i1 = whole.step(a)
        o2, r2, d2, i2 = grouped.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        assert [sorted(x) for x in i1] == [sorted(x) for x in i2]
        for x, y in zip(i1, i2, strict=True):
            if "terminal_observation" in x:
                np.testing.assert_array_equal(x["terminal_observation"],
                                              y["terminal_observation"])
    assert grouped.get_attr("max_steps", [4, 1]) == whole.get_attr("max_steps", [4, 1])
    assert grouped.env_method("get_action_meanings", indices=[2]) == \
        whole.env_method("get_action_meanings", indices=[2])
    grouped.set_attr("shaped", True, indices=[0, 3])
    assert grouped.get_attr("shaped") == [True, False, False, True, False]
    with pytest.raises(IndexError, match="out of range"):
        grouped.get_attr("shaped", [5])
    grouped.close()
    whole.close()


def test_overlap_config_is_checked():
    with pytest.raises(ConfigError, match="rollout: must be lockstep or overlap"):
        _cfg(rollout="sideways")
    with pytest.raises(ConfigError, match="overlap needs n_envs >= 2"):
        _cfg(n_envs=1)


def test_overlapped_rollout_stores_what_the_envs_went_through():
    """Every stored row is the observation the env showed, the action it then received, and
    the episode-start flag of that observation; one on_step per row."""
    cfg = _cfg()
    venv = tr.make_vec_env(cfg, env_wrapper=Recorder)
    assert isinstance(venv, GroupedVecEnv) and len(venv.groups) == 2
    model = _model(venv)

    class Count(BaseCallback):
        def __init__(self):
            super().__init__()
            self.steps = 0

        def _on_step(self):
            self.steps += 1
            assert len(self.locals["infos"]) == 4 and self.locals["new_obs"].shape[0] == 4
            return True

    count = Count()
    _, cb = model._setup_learn(10_000, count)
    cb.on_training_start(locals(), globals())
    for _ in range(2):  # two rollouts: the second starts from the first's last observation
        assert collect_rollouts_overlapped(model, model.env, cb, model.rollout_buffer, 16)
    assert count.steps == 32 and model.num_timesteps == 4 * 32
    buf = model.rollout_buffer
    for j in range(4):
        rec = venv.get_attr("actions", [j])[0]
        seen = venv.get_attr("observations", [j])[0]
        assert len(rec) == 32
        np.testing.assert_array_equal(buf.actions[:, j, 0], rec[-16:])
        # Episodes are 7 steps; the recorder sees each episode's reset frame and its 7 step
        # frames (the last one terminal, never acted on): step k acts on frame 8 e + t.
        ks = range(16, 32)
        want = np.stack([np.transpose(seen[8 * (k // 7) + k % 7], (2, 0, 1)) for k in ks])
        np.testing.assert_array_equal(buf.observations[:, j].astype(np.uint8), want)
        np.testing.assert_array_equal(buf.episode_starts[:, j].astype(bool),
                                      [k % 7 == 0 for k in ks])
    tr.close_quietly(venv)


def test_overlapped_training_is_deterministic_per_seed():
    def run():
        cfg = _cfg()
        venv = tr.make_vec_env(cfg)
        model = _model(venv)
        from mtsandbox.agents.overlap import use_overlapped_rollouts

        use_overlapped_rollouts(model)
        model.learn(64 * 2)
        tr.close_quietly(venv)
        return torch.cat([p.detach().flatten() for p in model.policy.parameters()])

    a, b = run(), run()
    assert torch.equal(a, b)


def test_a_stopping_callback_leaves_no_step_in_flight():
    cfg = _cfg()
    venv = tr.make_vec_env(cfg)
    model = _model(venv)

    class StopAt(BaseCallback):
        def _on_step(self):
            return self.n_calls < 5

    _, cb = model._setup_learn(10_000, StopAt())
    cb.on_training_start(locals(), globals())
    calls = {"async": 0, "wait": 0}
    inner_async, inner_wait = venv.step_group_async, venv.step_group_wait

    def counting_async(i, a):
        calls["async"] += 1
        inner_async(i, a)

    def counting_wait(i):
        calls["wait"] += 1
        return inner_wait(i)

    venv.step_group_async, venv.step_group_wait = counting_async, counting_wait
    assert not collect_rollouts_overlapped(model, model.env, cb, model.rollout_buffer, 16)
    # 5 rows x 2 groups, plus group 0's next step (sent before the callbacks ran), waited out:
    # every send has its wait, so no worker is left mid-step.
    assert calls["async"] == calls["wait"] == 11
    tr.close_quietly(venv)


def test_train_with_overlap_writes_a_loadable_checkpoint(tmp_path):
    from test_train import tiny_overrides

    cfg = load_config("smoke", tiny_overrides(tmp_path, n_envs=2, vec_env="dummy",
                                              rollout="overlap", n_steps=16))
    from mtsandbox.agents.overlap import OverlapPPO

    seen = []

    class Look(BaseCallback):
        def _on_training_start(self):
            seen.append(type(self.model))

        def _on_step(self):
            return True

    res = tr.train(cfg, callbacks=[Look()])
    assert seen == [OverlapPPO]
    assert res.final_checkpoint is not None and res.steps >= 64
    model, _ = tr.load_checkpoint(res.final_checkpoint)
    assert type(model) is PPO
