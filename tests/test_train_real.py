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
