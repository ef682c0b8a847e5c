"""A tiny PPO run against real Minetest servers writes a checkpoint that loads and evaluates."""

from __future__ import annotations

import json

from mtsandbox.agents.evaluate import evaluate
from mtsandbox.agents.checkpoints import load_checkpoint
from mtsandbox.agents.train import train
from mtsandbox.agents.config import load_config


def test_tiny_training_on_real_servers(tmp_path):
    cfg = load_config("smoke", overrides=[
        "total_steps=256", "n_envs=2", "n_steps=64", "batch_size=64", "eval_every=0",
        "checkpoint_every=0", f"run_dir={tmp_path}", "progress_bar=false",
        "env_kwargs.max_episode_steps=100"])
    res = train(cfg)
    assert res.final_checkpoint is not None and res.steps >= 256
    model, meta = load_checkpoint(res.final_checkpoint)
    assert meta["env_id"] == "MinetestSandbox/TreePunchShaped-v0"
    assert meta["action_meanings"][-1] == "punch" and meta["step"] >= 256
    # the resolved variant and the id's defaults fingerprint travel with the checkpoint
    assert meta["env_resolved"]["task_params"]["shaped"] is True
    assert meta["env_resolved"]["env"]["width"] == 64
    assert len(meta["env_fingerprint"]) == 16
    assert model.observation_space.shape == (3, 64, 64)  # SB3 transposes images
    rep = evaluate(res.final_checkpoint, n_episodes=1, seed=3, record_dir=tmp_path / "rec")
    assert rep.summary["length"]["mean"] == 100
    ep = sorted((tmp_path / "rec").glob("ep_*"))
    assert len(ep) == 1
    meta_rec = json.loads((ep[0] / "meta.json").read_text())
    assert meta_rec["complete"] and meta_rec["n_steps"] == 100


def test_overlapped_rollouts_on_real_servers(tmp_path):
    """``rollout: overlap`` trains on 4 real servers in two subprocess groups, with every
    transition stored: the TensorBoard-free check is the step count and episode stats."""
    from stable_baselines3.common.callbacks import BaseCallback

    from mtsandbox.agents.overlap import GroupedVecEnv, OverlapPPO

    seen: dict[str, object] = {}

    class Look(BaseCallback):
        def _on_training_start(self):
            seen["model"], seen["env"] = type(self.model), type(self.training_env)

        def _on_step(self):
            for info in self.locals["infos"]:
                if "episode" in info:
                    seen.setdefault("lengths", []).append(info["episode"]["l"])
            return True

    cfg = load_config("smoke", overrides=[
        "total_steps=512", "n_envs=4", "n_steps=64", "batch_size=64", "eval_every=0",
        "checkpoint_every=0", f"run_dir={tmp_path}", "progress_bar=false",
        "env_kwargs.max_episode_steps=50", "rollout=overlap", "vec_env=subproc"])
    res = train(cfg, callbacks=[Look()])
    assert seen["model"] is OverlapPPO and seen["env"] is GroupedVecEnv
    assert res.steps == 512
    assert seen["lengths"] and all(n == 50 for n in seen["lengths"])  # 4 envs x 2 episodes each
    assert len(seen["lengths"]) == 8
    model, _ = load_checkpoint(res.final_checkpoint)
    assert model.observation_space.shape == (3, 64, 64)
