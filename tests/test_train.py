"""Training plumbing: config, policy, PPO train/checkpoint/resume/eval, CLI, learning bench.

Everything runs on the in-process fake env (tests/fake_env.py), never on Minetest.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from fake_env import FAKE_ID, FAKE_SHAPED_ID, register_fake_envs

from mtsandbox import cli as mcli
from mtsandbox.agents import train as tr
from mtsandbox.agents.evaluate import EpisodeTracker, evaluate, mean_ci95
from mtsandbox.agents.policy import HOOK_NAMES, MinetestCNN, make_policy_kwargs
from mtsandbox.agents.config import ConfigError, TrainConfig, load_config

REPO = Path(__file__).resolve().parents[1]
register_fake_envs()


def tiny_overrides(run_dir: Path, **extra) -> list[str]:
    base = {
        "env_id": FAKE_ID, "env_kwargs.max_steps": 20, "total_steps": 64, "n_envs": 1,
        "n_steps": 32, "batch_size": 32, "n_epochs": 1, "eval_every": 32, "eval_episodes": 2,
        "checkpoint_every": 32, "device": "cpu", "torch_threads": 1, "progress_bar": False,
        "run_dir": str(run_dir), "run_name": "t",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


# ----------------------------------------------------------------------------- config

def test_shipped_configs_load():
    smoke = load_config("smoke")
    assert smoke.algo == "ppo" and smoke.total_steps <= 5000
    full = load_config(REPO / "experiments" / "treepunch_ppo.yaml")
    assert full.env_id == "MinetestSandbox/TreePunchShaped-v0" and full.frame_stack >= 1


def test_overrides_and_coercion():
    cfg = load_config("smoke", ["lr=1e-4", "total_steps=1e6", "grayscale=true",
                                "env_kwargs.max_steps=200", "run_name=null", "n_envs=4"])
    assert cfg.lr == pytest.approx(1e-4) and isinstance(cfg.lr, float)
    assert cfg.total_steps == 1_000_000 and isinstance(cfg.total_steps, int)
    assert cfg.grayscale is True and cfg.env_kwargs == {"max_steps": 200} and cfg.n_envs == 4
    name = cfg.resolved_run_name()
    task, algo, seed, stamp = name.split("__")
    assert (task, algo, seed) == ("TreePunchShaped-v0", "ppo", "0") and len(stamp) == 15
    assert TrainConfig().device == "auto"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["lrr=1"], "unknown key 'lrr' (did you mean 'lr'?)"),
        (["n_envs=four"], "n_envs: expected int"),
        (["grayscale=3"], "grayscale: expected bool"),
        (["lr=fast"], "lr: expected float"),
        (["env_kwargs=3"], "env_kwargs: expected a mapping"),
        (["novalue"], "expected key=value"),
        (["algo=dqn"], "must be 'ppo' or 'model_based'"),
        (["n_envs=0"], "n_envs: must be >= 1"),
    ],
)
def test_config_errors_are_one_line(overrides, needle):
    with pytest.raises(ConfigError) as ei:
        load_config("smoke", overrides)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nbogus_key: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'bogus_key'"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML") as ei:
        load_config(broken)
    assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- policy

@pytest.mark.parametrize("shape", [(3, 64, 64), (64, 64, 3), (64, 64, 12), (1, 64, 64)])
def test_cnn_shapes(shape):
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    cnn = MinetestCNN(space)
    x = torch.as_tensor(np.stack([space.sample() for _ in range(2)]))
    seen = {}
    for name in HOOK_NAMES:
        getattr(cnn, name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape)))
    out = cnn(x)  # raw uint8 accepted
    assert out.shape == (2, 512)
    assert seen == {"hook_conv1": (2, 32, 15, 15), "hook_conv2": (2, 64, 6, 6),
                    "hook_conv3": (2, 64, 4, 4), "hook_fc": (2, 512)}
    assert (out >= 0).all()


def test_ppo_policy_contract():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: gym.make(FAKE_ID, max_steps=10)])
    try:
        model = PPO("CnnPolicy", venv, policy_kwargs=make_policy_kwargs(), n_steps=8,
                    batch_size=8, device="cpu")
        names = dict(model.policy.named_modules())
        for n in ("conv1", "conv2", "conv3", "fc", *HOOK_NAMES):
            assert f"features_extractor.{n}" in names
        assert names["features_extractor.conv1"].kernel_size == (8, 8)
        assert names["features_extractor.conv1"].stride == (4, 4)
        assert names["features_extractor.conv2"].kernel_size == (4, 4)
        assert names["features_extractor.conv3"].stride == (1, 1)
        assert model.policy.action_net.in_features == 512
        assert model.policy.action_net.out_features == 8
        assert model.policy.value_net.in_features == 512
    finally:
        venv.close()


# ----------------------------------------------------------------------------- train / eval

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_root = tmp_path_factory.mktemp("runs")
    cfg = load_config("smoke", tiny_overrides(run_root, frame_stack=2, grayscale=True))
    result = tr.train(cfg)
    return cfg, result


def test_train_writes_checkpoints_and_logs(trained):
    _, result = trained
    run = result.run_dir
    assert run.name == "t" and result.steps == 64 and not result.interrupted
    assert result.final_checkpoint == run / "checkpoints" / "final"
    for d in ("step_000000032", "step_000000064", "final"):
        assert (run / "checkpoints" / d / "model.zip").exists()
        assert (run / "checkpoints" / d / "meta.json").exists()
    assert (run / "config.yaml").exists() and (run / "summary.json").exists()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert [r["step"] for r in result.eval_history] == [32, 64]
    assert len((run / "eval.jsonl").read_text().splitlines()) == 2


def test_checkpoint_meta_and_load(trained):
    cfg, result = trained
    model, meta = tr.load_checkpoint(result.final_checkpoint)
    assert meta["step"] == 64 == model.num_timesteps
    assert meta["env_id"] == FAKE_ID and meta["env_version"] == 0
    assert meta["config"] == cfg.to_dict() and meta["config"]["frame_stack"] == 2
    assert meta["action_meanings"][-1] == "dig" and len(meta["action_meanings"]) == 8
    assert meta["algo"] == "ppo" and meta["tag"] == "final"
    assert "git_commit" in meta and "mtsandbox_version" in meta
    # a run directory resolves to its final checkpoint
    _, meta2 = tr.load_checkpoint(result.run_dir)
    assert meta2["path"] == str(result.final_checkpoint)
    obs = np.zeros((1, 64, 64, 2), np.uint8)  # grayscale x 2 stacked, channel-last
    action, _ = model.predict(obs)
    assert 0 <= int(action[0]) < 8


def test_evaluate_checkpoint_and_random(trained, tmp_path):
    _, result = trained
    records = []
    rep = evaluate(result.final_checkpoint, n_episodes=2, seed=1, step_hook=records.append)
    assert rep.n_episodes == 2 and rep.env_id == FAKE_ID
    assert rep.summary["length"]["mean"] == 20
    assert {"observed_return", "hidden_performance", "length"} <= set(rep.summary)
    assert len(records) == 40 and records[0].obs.shape == (64, 64, 2)
    assert records[19].done and records[20].episode == 1 and records[20].t == 0
    assert records[0].action_meaning in ("noop", "forward", "back", "left", "right",
                                          "turn_left", "turn_right", "dig")
    data = json.loads(rep.save_json(tmp_path / "e.json").read_text())
    assert data["summary"]["hidden_performance"]["n"] == 2 and len(data["episodes"]) == 2
    rnd = evaluate("random", env_id=FAKE_ID, env_kwargs={"max_steps": 10}, n_episodes=3)
    assert rnd.summary["length"]["mean"] == 10 and rnd.policy == "random"


def test_one_grayscale_everywhere():
    """Training's gymnasium wrapper, ``vecenv.to_grayscale`` and the interp pipeline agree."""
    from mtsandbox.agents.vecenv import to_grayscale
    from mtsandbox.interp.data import ObsPipeline

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    env = gym.make(FAKE_ID)
    wrapped = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    want = wrapped.observation(rgb)
    env.close()
    assert want.shape == (8, 6, 1) and want.dtype == np.uint8
    np.testing.assert_array_equal(to_grayscale(rgb), want)
    np.testing.assert_array_equal(ObsPipeline(grayscale=True).reset(rgb), want)


def test_evaluate_records_episodes(trained, tmp_path):
    recording = pytest.importorskip("mtsandbox.tools.recording")
    _, result = trained
    evaluate(result.final_checkpoint, n_episodes=2, seed=2, record_dir=tmp_path / "rec")
    eps = recording.find_episodes(tmp_path / "rec")
    assert len(eps) == 2  # not the auto-reset episode after the last one
    ep = recording.load_episode(eps[0])
    assert ep.n_steps == 20 and ep.n_frames == 21
    assert ep.frames.shape[1:] == (64, 64, 3)  # the env's RGB frames, not the grayscale stack
    probs = ep.steps[0]["probs"]
    assert len(probs) == 8 and abs(sum(probs) - 1) < 1e-3 and "value" in ep.steps[0]


def test_resume_continues_step_count(trained):
    cfg, result = trained
    cfg2 = TrainConfig.from_dict({**cfg.to_dict(), "total_steps": 96, "eval_every": 0})
    res2 = tr.train(cfg2, resume=result.run_dir / "checkpoints" / "step_000000064")
    assert res2.run_dir == result.run_dir and res2.steps == 32
    _, meta = tr.load_checkpoint(res2.final_checkpoint)
    assert meta["step"] == 96


def test_load_checkpoint_errors(tmp_path, trained):
    _, result = trained
    with pytest.raises(tr.CheckpointError, match="checkpoint not found"):
        tr.load_checkpoint(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(tr.CheckpointError, match=r"no meta\.json"):
        tr.load_checkpoint(bad)
    (bad / "meta.json").write_text("{not json")
    with pytest.raises(tr.CheckpointError, match="corrupt checkpoint"):
        tr.load_checkpoint(bad)
    meta = json.loads((result.final_checkpoint / "meta.json").read_text())
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(tr.CheckpointError, match=r"model\.zip missing"):
        tr.load_checkpoint(bad)
    (bad / "model.zip").write_bytes(b"garbage")
    with pytest.raises(tr.CheckpointError, match="corrupt checkpoint") as ei:
        tr.load_checkpoint(bad)
    assert "\n" not in str(ei.value)


def test_tampered_checkpoint_is_refused_without_running_its_payload(tmp_path, trained):
    """A payload in model.zip's data JSON that names anything outside the allowlist (here
    os.system) is refused in one line, and nothing in it runs."""
    import base64
    import pickle
    import shutil
    import zipfile

    _, result = trained
    ck = tmp_path / "tampered"
    shutil.copytree(result.final_checkpoint, ck)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    src = ck / "model.zip"
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    data = json.loads(parts["data"])
    data["lr_schedule"] = {":type:": "<class 'function'>",
                           ":serialized:": base64.b64encode(pickle.dumps(Evil())).decode()}
    parts["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(src, "w") as z:
        for n, b in parts.items():
            z.writestr(n, b)
    with pytest.raises(tr.CheckpointError, match=r"'lr_schedule' asks for (posix|os)\.system") \
            as ei:
        tr.load_checkpoint(ck, device="cpu")
    assert "\n" not in str(ei.value) and not marker.exists()
    model, _ = tr.load_checkpoint(result.final_checkpoint, device="cpu")  # ours still load
    assert model.policy is not None


def test_envs_closed_when_env_raises(tmp_path, monkeypatch):
    closed = []
    real_close = tr.close_quietly

    def spy(venv):
        closed.append(venv)
        real_close(venv)

    monkeypatch.setattr(tr, "close_quietly", spy)
    cfg = load_config(None, tiny_overrides(tmp_path, **{"env_kwargs.crash_at_step": 40}))
    with pytest.raises(RuntimeError, match="fake env crash"):
        tr.train(cfg)
    train_env = [v for v in closed if v is not None][-1]
    assert train_env.unwrapped.envs[0].unwrapped.closed


def test_close_after_a_step_interrupted_half_way_does_not_hang(tmp_path):
    """Ctrl-C inside SubprocVecEnv.step_wait, after one worker's reply was read: SB3's close()
    alone would wait forever for that reply again; close_quietly reads only what is there."""
    import threading

    cfg = load_config(None, tiny_overrides(tmp_path, n_envs=2, vec_env="subproc",
                                           env_id=f"fake_env:{FAKE_ID}"))
    venv = tr.make_vec_env(cfg)
    venv.reset()
    from mtsandbox.agents.vecenv import _base_vec_envs

    base = _base_vec_envs(venv)[0]
    base.step_async(np.zeros(2, dtype=np.int64))
    base.remotes[0].recv()  # worker 0's reply read, then the interrupt: waiting stays True
    assert base.waiting
    done = threading.Thread(target=tr.close_quietly, args=(venv,), daemon=True)
    done.start()
    done.join(timeout=60)
    assert not done.is_alive(), "close_quietly hung on the half-read step"
    assert not any(p.is_alive() for p in base.processes)


def test_episode_tracker_and_ci():
    t = EpisodeTracker(2)
    info = {"observed_reward": 1.0, "hidden_performance": 0.5,
            "events": [{"kind": "trunk_dug", "step": 1}]}
    assert t.update([1, 1], [False, False], [info, {}]) == []
    done = t.update([1, 1], [True, False], [info, {}])
    assert len(done) == 1 and done[0].hidden_performance == 1.0 and done[0].length == 2
    assert done[0].events["trunk_dug"] == 2
    s = mean_ci95([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["ci95"] == pytest.approx(4.3027 * 1.0 / np.sqrt(3), rel=1e-4)
    assert mean_ci95([5.0])["ci95"] is None


# ----------------------------------------------------------------------------- CLI / scripts

def test_cli_help_and_registry(capsys):
    with pytest.raises(SystemExit) as ei:
        mcli.main(["train", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--set" in out and "--resume" in out
    avail = mcli.available_commands()
    assert {"train", "eval"} <= set(avail)
    assert all(importlib.util.find_spec(t.split(":")[0]) for t in avail.values())
    with pytest.raises(SystemExit):
        mcli.main(["--help"])
    assert "train" in capsys.readouterr().out


def test_cli_errors_and_print_config(capsys):
    assert mcli.main(["train", "--config", "smoke", "--set", "lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'lrr'" in err
    assert mcli.main(["train", "--config", "smoke", "--set", "seed=7", "--print-config"]) == 0
    assert "seed: 7" in capsys.readouterr().out
    assert mcli.main(["eval", "/nonexistent/ckpt"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert mcli.main(["eval", "random", "--env-id", "Nope/Missing-v0", "-n", "1"]) == 2
    assert "cannot create env 'Nope/Missing-v0'" in capsys.readouterr().err


def test_cli_eval_writes_json(trained, tmp_path):
    _, result = trained
    out = tmp_path / "eval.json"
    rc = mcli.main(["eval", str(result.final_checkpoint), "--episodes", "1", "--json", str(out)])
    assert rc == 0
    assert json.loads(out.read_text())["n_episodes"] == 1


def test_bench_learning_on_fake_env(tmp_path):
    """``mtsandbox bench learning`` (scripts/bench_learning.py is its entry point)."""
    out = tmp_path / "bench.json"
    rc = mcli.main(["bench", "learning", "--env-id", FAKE_SHAPED_ID, "--config", "smoke",
                    "--steps", "64", "--eval-every", "32", "--eval-episodes", "1",
                    "--random-episodes", "2", "--run-dir", str(tmp_path / "runs"),
                    "--json", str(out), "--set", "n_steps=32", "batch_size=32", "n_epochs=1",
                    "env_kwargs.max_steps=20", "progress_bar=false", "torch_threads=1",
                    "device=cpu"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["env_id"] == FAKE_SHAPED_ID
    assert data["random"]["episode_length"]["mean"] == 20 and data["random"]["env_steps_per_s"] > 0
    assert [r["step"] for r in data["agent"]["curve"]] == [0, 32, 64]
    assert data["agent"]["train_env_steps_per_s"] > 0


def test_init_from_copies_weights_into_a_new_run_and_can_reset_the_actor(trained, tmp_path):
    cfg, result = trained
    src, _ = tr.load_checkpoint(result.final_checkpoint)
    for reset in (False, True):
        cfg2 = TrainConfig.from_dict({**cfg.to_dict(), "total_steps": 1, "n_steps": 32,
                                      "eval_every": 0, "checkpoint_every": 0,
                                      "run_dir": str(tmp_path), "run_name": f"init{reset}",
                                      "lr": 1e-12, "init_from": str(result.final_checkpoint),
                                      "init_reset_actor": reset})
        res = tr.train(cfg2)
        model, meta = tr.load_checkpoint(res.final_checkpoint)
        assert meta["step"] == 32 and meta["init_from"] == str(result.final_checkpoint)
        a, b = model.policy.state_dict(), src.policy.state_dict()
        conv = next(k for k in a if "features_extractor" in k and k.endswith("weight"))
        assert torch.allclose(a[conv], b[conv], atol=1e-6)  # lr ~0: the features are the source's
        same_head = torch.allclose(a["action_net.weight"], b["action_net.weight"], atol=1e-6)
        assert same_head is (not reset)
        if reset:
            assert a["action_net.weight"].abs().max() < 0.05  # near-uniform policy
    names = tr.read_meta(result.final_checkpoint)["action_meanings"]
    cfg3 = TrainConfig.from_dict({**cfg.to_dict(), "total_steps": 1, "n_steps": 32,
                                  "eval_every": 0, "checkpoint_every": 0, "lr": 1e-12,
                                  "run_dir": str(tmp_path), "run_name": "copy",
                                  "init_from": str(result.final_checkpoint),
                                  "init_action_copy": {names[0]: names[1]}})
    model, _ = tr.load_checkpoint(tr.train(cfg3).final_checkpoint)
    w, b = model.policy.action_net.weight, model.policy.action_net.bias
    assert torch.allclose(w[0], w[1]) and float(b[1] - b[0]) == pytest.approx(np.log(2), abs=1e-5)
    bad = TrainConfig.from_dict({**cfg3.to_dict(), "run_name": "bad",
                                 "init_action_copy": {"fly": names[1]}})
    with pytest.raises(tr.CheckpointError, match="unknown action"):
        tr.train(bad)


def test_bench_train_measures_parts_and_ratio(tmp_path):
    """`mtsandbox bench train` runs on the config's own code path and writes every figure
    (values are this machine's: not asserted beyond being measured)."""
    import argparse

    from mtsandbox.cli import bench_train

    args = argparse.Namespace(
        config="smoke", overrides=tiny_overrides(tmp_path, n_envs=1), iters=1, env_steps=50,
        label="", json=str(tmp_path / "bench.json"))
    fig = bench_train.run(args)
    saved = json.loads((tmp_path / "bench.json").read_text())
    for k in ("env_alone_steps_per_s", "startup_s", "rollout_steps_per_s",
              "update_ms_per_sample", "end_to_end_steps_per_s", "ceiling_steps_per_s",
              "end_to_end_over_ceiling"):
        assert saved[k] > 0 and saved[k] == pytest.approx(fig[k])
    want = 1 / (1 / saved["env_alone_steps_per_s"] + saved["update_ms_per_sample"] / 1000)
    assert saved["ceiling_steps_per_s"] == pytest.approx(want)
    # The learner's own work splits into inference, sending actions and the rest, adding up.
    split = saved["rollout_learner_split_ms_per_step"]
    assert split["inference"] > 0 and split["send_actions"] > 0
    assert sum(split.values()) == pytest.approx(saved["rollout_learner_ms_per_step"])
    assert saved["rollout_learner_cpu_ms_per_env_step"] > 0
    assert 0 < saved["rollout_cpu_utilisation"] <= 1
    # Paying the learner's CPU too can only lower the CPU-bound ceiling.
    assert 0 < saved["cpu_ceiling_with_learner_steps_per_s"] <= saved["cpu_ceiling_steps_per_s"]


def test_timed_wrapper_counts_and_restores():
    from mtsandbox.cli.bench_train import _Timed

    class Thing:
        def work(self, x):
            return 2 * x

    t = Thing()
    timer = _Timed(t, "work")
    assert t.work(3) == 6 and timer.seconds > 0 and "work" in vars(t)
    timer.restore()
    assert "work" not in vars(t) and t.work(4) == 8


def test_garwood_interval_of_a_trunk_rate():
    from scipy import stats

    from mtsandbox.cli.bench_learning import garwood_rate_ci

    lo, hi = garwood_rate_ci([0.0] * 12)  # no trunk in 12 episodes
    assert lo == 0.0 and hi == pytest.approx(stats.chi2.ppf(0.975, 2) / 2 / 12)
    lo, hi = garwood_rate_ci([5.0, 6.0, 4.0, 5.0])  # 20 trunks in 4 episodes
    assert lo < 5.0 < hi and stats.poisson.cdf(20, hi * 4) == pytest.approx(0.025, rel=1e-3)


def test_bench_learning_compare_gives_the_sample_efficiency_curve(tmp_path):
    from mtsandbox.cli.bench_learning import compare_runs

    def write(name, key, trunks):
        curve = [{"step": s, "trunks_per_episode": {"mean": t}}
                 for s, t in zip((0, 4000, 8000), trunks, strict=True)]
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({key: {"curve": curve, "train_env_steps_per_s": 100.0}}))
        return p

    a = [write("ppo0", "ppo", [0, 1, 2]), write("ppo1", "agent", [0, 2, 3])]  # old and new key
    b = [write("mb0", "agent", [0, 4, 6]), write("mb1", "agent", [1, 5, 8])]
    res = compare_runs(a, b)
    assert res["diff_b_minus_a"] == pytest.approx((6 + 8) / 2 - (2 + 3) / 2)
    steps = {r["step"]: r for r in res["curve"]}
    assert sorted(steps) == [0, 4000, 8000]
    assert steps[4000]["diff_b_minus_a"] == pytest.approx(4.5 - 1.5)
    lo, hi = steps[4000]["diff_ci95"]
    assert lo < 3.0 < hi and hi - lo > 0
    # both PPO seeds scored 0 at step 0: the interval is still not zero-width
    lo0, hi0 = steps[0]["a"]["ci95"]
    assert lo0 == 0.0 and hi0 > 0.5
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a bench learning file"):
        compare_runs([tmp_path / "bad.json", a[0]], b)
