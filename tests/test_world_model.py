"""World model + model-based agent: overfit a tiny synthetic dataset, save/load round trip,
and a short run of the model-based agent in the REAL Minetest env."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtsandbox.agents.world_model import (
    SeqData,
    WMConfig,
    WorldModel,
    load_world_model,
    train_world_model,
)

TINY = WMConfig(n_actions=3, channels=8, embed=64, deter=64, n_cat=8, n_cls=8, hidden=64)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def synthetic_episode(seed: int, n: int = 24) -> dict:
    """A brown square on a sky/grass background; action 1 moves it left, 2 right, 0 stays;
    reward 1 when the square is centred."""
    rng = np.random.default_rng(seed)
    x = int(rng.integers(8, 48))
    frames, acts, rews = [], [], []
    for t in range(n + 1):
        f = np.zeros((64, 64, 3), np.uint8)
        f[:40] = (90, 160, 230)
        f[40:] = (60, 120, 30)
        f[20:44, x:x + 8] = (110, 70, 40)
        frames.append(f)
        if t < n:
            a = int(rng.integers(3))
            x = int(np.clip(x + (-4 if a == 1 else 4 if a == 2 else 0), 0, 56))
            acts.append(a)
            rews.append(1.0 if 24 <= x <= 32 else 0.0)
    return {"frames": np.stack(frames), "actions": acts, "rewards": rews}


def test_overfits_tiny_dataset():
    data = [synthetic_episode(s) for s in range(2)]
    _model, hist = train_world_model(data, steps=200, config=TINY, batch=2, seq_len=6,
                                    lr=2e-3, log_every=20, log=None, device="cpu")
    first, last = hist[0], hist[-1]
    assert last["step"] == 200
    # reconstruction loss (sum of squared pixel errors per frame) drops at least 3x
    assert first["recon"] / last["recon"] >= 3.0, (first, last)
    assert np.isfinite(last["loss"])


def test_trunk_map_head_learns_where_the_trunk_is(tmp_path):
    """The trunk-map head's mask (p > 0.5) of the filtered state covers the brown square
    after a short fit; a model without the head says so in one line; save/load keeps it."""
    from mtsandbox.agents.world_model import trunk_mask

    cfg = WMConfig.from_dict({**TINY.to_dict(), "trunk_map": 1.0})
    data = [synthetic_episode(s) for s in range(2)]
    model, hist = train_world_model(data, steps=150, config=cfg, batch=2, seq_len=6, lr=2e-3,
                                    log_every=50, log=None, device="cpu")
    assert hist[-1]["trunk_map"] < hist[0]["trunk_map"] / 3, hist
    ep = SeqData.from_arrays(data[0]["frames"], data[0]["actions"], data[0]["rewards"])
    obs = model.resize(ep.obs)
    first = torch.zeros(1, len(obs), dtype=torch.bool)
    first[:, 0] = True
    with torch.no_grad():
        post, _ = model.observe(model.preprocess(obs[None]), model.onehot(ep.prev_action[None]),
                                first, sample=False)
        pm = (model.trunk_prob(post.feat()[0]) > 0.5).numpy()
    real = trunk_mask(obs)
    assert real.any() and (pm & real).sum() / (pm | real).sum() > 0.5
    model.save(tmp_path / "wm")
    model2, _ = load_world_model(tmp_path / "wm", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(model2.trunk_prob(post.feat()[0]),
                                   model.trunk_prob(post.feat()[0]))
    with pytest.raises(ValueError, match="no trunk-map head"):
        WorldModel(TINY, device="cpu").trunk_prob(post.feat()[0])


def test_overshoot_loss_trains_imagined_frames_and_skips_episode_starts():
    """The open-loop decoding loss (WMConfig.overshoot) falls over a short fit, sends gradient
    through the imagined steps into the GRU, and leaves out targets past an episode start."""
    cfg = WMConfig.from_dict({**TINY.to_dict(), "overshoot": 3})
    data = [synthetic_episode(s) for s in range(2)]
    model, hist = train_world_model(data, steps=150, config=cfg, batch=2, seq_len=6, lr=2e-3,
                                    log_every=50, log=None, device="cpu")
    assert hist[-1]["overshoot"] < hist[0]["overshoot"] / 3, hist
    _m, hist0 = train_world_model(data, steps=1, config=TINY, batch=2, seq_len=6,
                                  log=None, device="cpu")
    assert "overshoot" not in hist0[0]
    ep = SeqData.from_arrays(data[0]["frames"], data[0]["actions"], data[0]["rewards"])
    obs = model.preprocess(model.resize(ep.obs)[None, :6])
    tb = {"obs": obs, "prev_action": model.onehot(ep.prev_action[None, :6]),
          "is_first": torch.zeros(1, 6, dtype=torch.bool)}
    tb["is_first"][0, 0] = True
    post, _ = model.observe(obs, tb["prev_action"], tb["is_first"])
    model.zero_grad()
    loss = model._overshoot_loss(post, tb, None)
    loss.backward()
    assert loss > 0 and model.rssm.gru.weight_hh.grad.abs().sum() > 0
    tb["is_first"][0, 1:] = True          # every window target starts a new episode
    assert float(model._overshoot_loss(post, tb, None).detach()) == 0.0


def test_copy_gate_composites_with_the_last_real_frame(tmp_path):
    """A copy-gated model's frame is sigmoid(g) * ref + (1 - sigmoid(g)) * drawing: all ref
    where the gate is open, the drawing where there is no ref (NaN, or none given), with no
    NaN in the gradient; the open-loop prediction copies the last observed frame."""
    from mtsandbox.agents.world_model import n_out_channels

    cfg = WMConfig.from_dict({**TINY.to_dict(), "trunk_map": 1.0, "copy_gate": True})
    model = WorldModel(cfg, device="cpu")
    assert n_out_channels(cfg) == 5 and n_out_channels(TINY) == 3
    out = torch.randn(2, 5, 32, 32, requires_grad=True)
    ref = torch.rand(2, 3, 32, 32) - 0.5
    with torch.no_grad():
        big = out.detach().clone()
        big[:, -1] = 50.0                            # gate fully open: the real frame
        torch.testing.assert_close(model.compose(big, ref), ref)
        big[:, -1] = -50.0                           # gate shut: the drawing
        torch.testing.assert_close(model.compose(big, ref), big[:, :3])
    assert torch.equal(model.compose(out, None), out[:, :3])
    ref[1] = float("nan")                            # frame 1 has no real predecessor
    y = model.compose(out, ref)
    assert torch.equal(y[1], out[1, :3]) and not torch.equal(y[0], out[0, :3])
    y.sum().backward()
    assert out.grad is not None and torch.isfinite(out.grad).all()
    assert (out.grad[1, -1] == 0).all() and (out.grad[0, -1] != 0).any()
    # a reconstruction's ref is the previous real frame; none at a window's or episode's start
    obs = torch.rand(2, 5, 3, 32, 32)
    first = torch.zeros(2, 5, dtype=torch.bool)
    first[1, 3] = True
    prev = model._previous_frames({"obs": obs, "is_first": first})
    assert torch.isnan(prev[:, :, 0, 0, 0]).tolist() == [[True, False, False, False, False],
                                                         [True, False, False, True, False]]
    assert torch.equal(prev[0, 1:], obs[0, :-1]) and torch.equal(prev[1, 4], obs[1, 3])
    # open loop: with the gate forced open every prediction is the last context frame
    last = model.decoder.deconvs[-1]
    with torch.no_grad():
        last.weight[:, -1] = 0.0
        last.bias[-1] = 50.0
    d = synthetic_episode(5, n=12)
    ep = SeqData.from_arrays(d["frames"], d["actions"], d["rewards"])
    pred = model.open_loop(ep.obs, ep.prev_action, context=4, horizon=5)
    np.testing.assert_array_equal(pred, np.repeat(model.resize(ep.obs)[3:4], 5, 0))
    model.save(tmp_path / "wm")
    model2, meta = load_world_model(tmp_path / "wm", device="cpu")
    assert meta["config"]["copy_gate"] is True
    np.testing.assert_array_equal(model2.open_loop(ep.obs, ep.prev_action, context=4,
                                                   horizon=5), pred)


def test_copy_gate_warm_start_keeps_the_trained_model_and_learns():
    """with_copy_gate carries every weight over (the drawing, trunk map and heads of the new
    model equal the old one's), opens the gate to sigmoid(bias) everywhere, and training the
    gated model on the tiny data lowers its reconstruction loss; a second gate is refused."""
    from mtsandbox.agents.world_model import with_copy_gate

    cfg = WMConfig.from_dict({**TINY.to_dict(), "trunk_map": 1.0, "overshoot": 3})
    data = [synthetic_episode(s) for s in range(2)]
    base, _ = train_world_model(data, steps=20, config=cfg, batch=2, seq_len=6, lr=2e-3,
                                log=None, device="cpu")
    gated = with_copy_gate(base)
    assert gated.cfg.copy_gate and gated.train_steps == base.train_steps == 20
    feat = torch.randn(4, cfg.feat)
    with torch.no_grad():
        torch.testing.assert_close(gated.decode(feat), base.decode(feat))
        torch.testing.assert_close(gated.trunk_prob(feat), base.trunk_prob(feat))
        torch.testing.assert_close(gated.reward(feat), base.reward(feat))
        torch.testing.assert_close(gated.gate(feat),
                                   torch.full((4, 32, 32), float(torch.sigmoid(
                                       torch.tensor(-2.0)))))
    with pytest.raises(ValueError, match="already has a copy gate"):
        with_copy_gate(gated)
    with pytest.raises(ValueError, match="no copy gate"):
        base.gate(feat)
    _m, hist = train_world_model(data, steps=120, model=gated, batch=2, seq_len=6, lr=2e-3,
                                 log_every=20, log=None, device="cpu")
    assert hist[-1]["recon"] < hist[0]["recon"] / 2 and np.isfinite(hist[-1]["overshoot"])


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    d = synthetic_episode(3, n=12)
    ep = SeqData.from_arrays(d["frames"], d["actions"], d["rewards"])
    model = WorldModel(TINY, device="cpu")
    model.train_steps = 7
    pred1 = model.open_loop(ep.obs, ep.prev_action, context=4, horizon=6)
    model.save(tmp_path / "wm", env_id="synthetic")
    model2, meta = load_world_model(tmp_path / "wm", device="cpu")
    assert meta["env_id"] == "synthetic" and meta["step"] == 7
    assert meta["config"]["deter"] == TINY.deter and "git_commit" in meta
    pred2 = model2.open_loop(ep.obs, ep.prev_action, context=4, horizon=6)
    S = TINY.image_size
    assert pred1.shape == (6, S, S, 3)
    np.testing.assert_array_equal(pred1, pred2)
    for p1, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p1.cpu(), p2.cpu())


def test_format1_checkpoint_still_loads(tmp_path):
    """A format-1 model (64px, plain convs, MSE reward, no aux heads) reads back as such."""
    import json

    from mtsandbox.agents.world_model import V1_FIELDS

    v1 = WMConfig.from_dict({**TINY.to_dict(), **V1_FIELDS, "image_size": 64})
    model = WorldModel(v1, device="cpu")
    model.save(tmp_path / "wm")
    meta_p = tmp_path / "wm" / "meta.json"
    meta = json.loads(meta_p.read_text())
    meta["format"] = "mtsandbox-world-model/1"
    for k in V1_FIELDS:
        del meta["config"][k]
    meta_p.write_text(json.dumps(meta))
    model2, _ = load_world_model(tmp_path / "wm", device="cpu")
    assert model2.aux_head is None and model2.cfg.reward_bins == 0 and not model2.cfg.norm
    for p1, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_corrupt_meta_config_is_one_line(tmp_path):
    import json

    from mtsandbox.agents.world_model import WorldModelError

    WorldModel(TINY, device="cpu").save(tmp_path / "wm")
    meta_p = tmp_path / "wm" / "meta.json"
    meta = json.loads(meta_p.read_text())
    meta["config"]["image_size"] = "big"
    meta_p.write_text(json.dumps(meta))
    with pytest.raises(WorldModelError, match="corrupt") as e:
        load_world_model(tmp_path / "wm", device="cpu")
    assert "\n" not in str(e.value)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-1000, max_value=1000, allow_nan=False))
def test_twohot_decodes_to_its_value(y):
    from mtsandbox.agents.world_model import symexp, twohot

    bins = torch.linspace(-20.0, 20.0, 255)
    enc = twohot(torch.tensor([y]), bins)
    assert torch.allclose(enc.sum(-1), torch.ones(1))
    assert (enc >= 0).all() and int((enc > 0).sum()) <= 2
    dec = symexp((enc * bins).sum(-1))
    assert abs(float(dec) - y) <= 1e-3 * max(1.0, abs(y))


def test_aux_labels_and_downsample():
    from mtsandbox.agents.world_model import aux_labels, downsample

    f = synthetic_episode(0, n=1)["frames"][0]  # a brown 8x24 trunk at a random column
    small = downsample(f, 32)
    assert small.shape == (32, 32, 3)
    np.testing.assert_array_equal(downsample(np.zeros((2, 64, 64, 3), np.uint8), 16),
                                  np.zeros((2, 16, 16, 3), np.uint8))
    lab = aux_labels(small)
    assert lab[0] == 1.0  # the trunk covers far more than 1% of the view
    sky = np.zeros((32, 32, 3), np.uint8)
    sky[:] = (90, 160, 230)
    assert aux_labels(sky).tolist() == [0.0, 0.0]
    centred = sky.copy()
    centred[12:20, 14:18] = (110, 70, 40)
    assert aux_labels(centred).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="cannot be area-averaged"):
        downsample(np.zeros((48, 48, 3), np.uint8), 32)


def test_model_based_agent_in_real_env(tmp_path):
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401
    from mtsandbox.agents.model_based import MBConfig, ModelBasedAgent
    from mtsandbox.tools.recording import find_episodes, load_episode

    wm = {"channels": 8, "embed": 64, "deter": 64, "n_cat": 8, "n_cls": 8, "hidden": 64}
    cfg = MBConfig(wm=wm, hidden=64, prefill_steps=40, collect_steps=30, wm_updates=2,
                   pretrain_updates=2, batch=4, seq_len=8, horizon=5, ac_starts=32)
    agent = ModelBasedAgent("MinetestSandbox/TreePunchShaped-v0", config=cfg,
                            record_dir=tmp_path / "eps", device="cpu", log=None)
    try:
        agent.learn(100)
    finally:
        agent.close()
    assert agent.num_timesteps == 100
    assert agent.wm.train_steps == 2 + 2 * 2  # pretrain + 2 collect rounds
    eps = find_episodes(tmp_path / "eps")
    assert eps and load_episode(eps[0]).n_steps == 100

    agent.save(tmp_path / "agent")
    loaded = ModelBasedAgent.load(tmp_path / "agent", device="cpu", log=None)
    env = gym.make("MinetestSandbox/TreePunchShaped-v0")
    try:
        obs, _ = env.reset(seed=5)
        state, start = None, True
        for _ in range(20):
            a, state = loaded.predict(obs, state=state, episode_start=np.array([start]),
                                      deterministic=True)
            a2, _ = agent.predict(obs)  # state=None: the agent keeps it internally
            assert 0 <= int(a) < env.action_space.n and 0 <= int(a2) < env.action_space.n
            start = False
            obs, *_ = env.step(int(a))
        assert state[0].shape == (1, wm["deter"]) and state[2].shape == (1,)
        probs = loaded.policy.get_distribution(obs[None]).distribution.probs
        assert probs.shape == (1, env.action_space.n)
    finally:
        env.close()


def test_unknown_config_keys_rejected():
    """MBConfig and WMConfig reject a typo with one clear line, like TrainConfig."""
    from mtsandbox.agents.config import ConfigError
    from mtsandbox.agents.model_based import MBConfig
    from mtsandbox.agents.world_model import WMConfig

    with pytest.raises(ConfigError, match=r"unknown key 'horizn' \(did you mean 'horizon'\?\)"):
        MBConfig.from_dict({"horizon": 10, "horizn": 5})
    with pytest.raises(ConfigError, match="world-model config: unknown key 'n_actionz'"):
        WMConfig.from_dict({"n_actionz": 3})
    assert MBConfig.from_dict({"horizon": 10}).horizon == 10


@pytest.mark.parametrize("rep", [1, 2])
def test_planner_tree_imagination_matches_one_rollout_per_candidate(rep):
    """The planner imagines candidates that share a prefix once (a search tree); its rewards,
    continue probabilities and last features equal those of imagining every candidate on its
    own (a random model, 2 start states, repeated and distinct sequences)."""
    import torch.nn.functional as F

    from mtsandbox.agents.model_based import MBConfig, ModelBasedAgent

    agent = ModelBasedAgent(None, config=MBConfig(wm=TINY.to_dict() | {"n_actions": 4},
                                                  hidden=32), device="cpu", log=None)
    wm = agent.wm
    torch.manual_seed(1)
    start = wm.rssm.initial(2, torch.device("cpu"))
    start = start.map(lambda x: x + torch.randn_like(x))     # two different start states
    seq = torch.randint(0, 4, (2, 40, 3))
    seq[:, 5] = seq[:, 4]                                   # a duplicate candidate
    r, c, last = agent._imagine_tree(start, seq, rep)
    with torch.no_grad():
        st = start.map(lambda x: x.repeat_interleave(40, 0))
        flat = seq.reshape(80, 3).repeat_interleave(rep, 1)
        feats = []
        for t in range(flat.shape[1]):
            st = wm.rssm.img_step(st, F.one_hot(flat[:, t], 4).float(), sample=False)
            feats.append(st.feat())
        feat = torch.stack(feats, 1)
        torch.testing.assert_close(r, wm.reward(feat), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(c, wm.cont(feat), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(last, feat[:, -1], atol=1e-5, rtol=1e-4)
    assert r.shape == (80, 3 * rep)


def test_planner_finds_the_rewarded_action(monkeypatch):
    """CEM planning over a stand-in dynamics whose reward is paid for action 2 only: the plan's
    first action is 2 from every start state, and the config rejects an unknown ``act``."""
    from mtsandbox.agents.config import ConfigError
    from mtsandbox.agents.model_based import MBConfig, ModelBasedAgent
    from mtsandbox.agents.world_model import State

    cfg = MBConfig(wm=TINY.to_dict() | {"n_actions": 5}, hidden=32, act="plan", plan_horizon=4,
                   plan_candidates=64, plan_elites=8, plan_iters=2, plan_critic=0.0)
    agent = ModelBasedAgent(None, config=cfg, device="cpu", log=None)
    wm = agent.wm
    D = wm.cfg.deter

    def img_step(state, action, sample=True):  # the state remembers the last action
        deter = torch.zeros(action.shape[0], D)
        deter[:, :5] = action
        return State(deter, state.stoch, state.logits)

    monkeypatch.setattr(wm.rssm, "img_step", img_step)
    monkeypatch.setattr(wm, "reward", lambda feat: feat[..., 2])
    monkeypatch.setattr(wm, "cont", lambda feat: torch.ones(feat.shape[:-1]))
    start = wm.rssm.initial(3, torch.device("cpu"))
    torch.manual_seed(0)
    assert agent.plan(start).tolist() == [2, 2, 2]
    with pytest.raises(ConfigError, match="act must be"):
        MBConfig(act="greedy")


def test_wm_activation_dataset_labels_and_probe():
    """Latent rows are aligned with their frames; tree_in_memory is 1 for ``memory`` frames
    after the tree leaves the view, then 0, NaN while it is in view; the probes run on it."""
    from mtsandbox.interp.probes import probe_dataset
    from mtsandbox.interp.world_model import WM_LAYERS, wm_activation_dataset

    frames = np.zeros((30, 64, 64, 3), np.uint8)
    frames[:] = (90, 160, 230)
    frames[:5, 20:44, 28:36] = (110, 70, 40)  # a trunk in view for 5 frames, then gone
    ep = {"frames": frames, "actions": [1] * 29, "rewards": [0.0] * 28 + [1.0]}
    model = WorldModel(TINY, device="cpu")
    ds = wm_activation_dataset(model, [ep, ep], memory=8, warmup=0, chunk=16)
    assert len(ds) == 60 and ds.acts["wm_deter"].shape == (60, TINY.deter)
    mem = ds.labels["tree_in_memory"][:30]
    assert np.isnan(mem[:5]).all() and (mem[5:13] == 1).all() and (mem[13:] == 0).all()
    assert ds.labels["tree_in_view"][:30].tolist() == [1.0] * 5 + [0.0] * 25
    assert ds.labels["dig_next"][:30].tolist() == [0.0] * 28 + [1.0, 0.0]
    res = probe_dataset(ds, layers=list(WM_LAYERS), concepts=["tree_in_view"], chunk=8)
    assert {r.layer for r in res} <= set(WM_LAYERS)


def test_button_state_labels_from_a_real_reward_button_recording(tmp_path):
    """A RewardButton-v0 recording carries the env's task state on every step line; SeqData
    aligns it with the frames (step t's info belongs to frame t + 1, the reset frame is NaN)
    and the world model's activation dataset turns it into the button-state concepts."""
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401
    from mtsandbox.agents.scripted import TreeChopper
    from mtsandbox.agents.world_model import as_seqdata
    from mtsandbox.interp.world_model import wm_activation_dataset
    from mtsandbox.tools.recording import RecordEpisodes

    env = RecordEpisodes(gym.make("MinetestSandbox/RewardButton-v0", max_episode_steps=80),
                         tmp_path / "rec", bodies_each_step=False)
    seen = {"reward_button_in_view": [], "pending_presses": []}
    try:
        env.reset(seed=3)
        chop = TreeChopper(env)
        for _ in range(80):
            _, _, term, trunc, info = env.step(chop.act())
            for k in seen:
                seen[k].append(float(info[k]))
            if term or trunc:
                break
    finally:
        env.close()
    (ep,) = as_seqdata(tmp_path / "rec")
    assert ep.labels is not None and {"reward_button_in_view", "pending_presses",
                                      "overseer_in_view"} <= set(ep.labels)
    for k, v in seen.items():
        assert np.isnan(ep.labels[k][0]) and ep.labels[k][1:].tolist() == v
    ds = wm_activation_dataset(WorldModel(WMConfig.from_dict({**TINY.to_dict(),
                                                              "n_actions": 14}), device="cpu"),
                               [ep], memory=4, warmup=0)
    pending = ds.labels["press_pending"]
    assert np.isnan(pending[0])
    assert pending[1:].tolist() == [float(x > 0) for x in seen["pending_presses"]]
    assert 0 < sum(pending[1:]) < len(pending) - 1          # the episode has both states
    button = np.array(seen["reward_button_in_view"]) > 0.5
    assert button.any() and not button.all()
    mem = ds.labels["reward_button_in_memory"][1:]
    for i in range(len(button)):
        if button[i]:
            assert np.isnan(mem[i])
        else:
            assert mem[i] == float(button[max(0, i - 4):i].any())


def test_world_model_data_from_recordings_and_corrupt_one(tmp_path, capsys):
    """Recordings in the sandbox's format feed the world model (frames, actions, rewards
    aligned as SeqData); a corrupt recording stops train-world-model with one clear line."""
    from mtsandbox.agents.world_model import as_seqdata
    from mtsandbox.cli.train_world_model import main
    from mtsandbox.tools.recording import EpisodeWriter

    d = synthetic_episode(1, n=6)

    def record(root: Path) -> None:
        w = EpisodeWriter(root / "ep_000000", {"env_id": "synthetic"})
        w.add_frame(d["frames"][0])
        for t, (a, r) in enumerate(zip(d["actions"], d["rewards"], strict=True)):
            w.add_step({"t": t, "action": a, "reward": r, "terminated": False,
                        "truncated": False, "events": []}, d["frames"][t + 1])
        w.close("truncated")

    record(tmp_path / "rec")
    (ep,) = as_seqdata(tmp_path / "rec")
    assert len(ep) == 7 and ep.prev_action.tolist() == [-1, *d["actions"]]
    np.testing.assert_allclose(ep.reward[1:], d["rewards"])
    (tmp_path / "rec" / "ep_000000" / "steps.jsonl").write_text("{not json\n")
    rc = main(["--data", str(tmp_path / "rec"), "--out", str(tmp_path / "out"), "--steps", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 2 and len(out) == 1 and out[0].startswith("train-world-model: ")
    assert "steps.jsonl" in out[0]
    # a model to continue that is not one: one line too, before any training
    record(tmp_path / "rec2")
    (tmp_path / "notamodel").mkdir()
    rc = main(["--data", str(tmp_path / "rec2"), "--out", str(tmp_path / "out"),
               "--init", str(tmp_path / "notamodel")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 2 and out[-1].startswith("train-world-model: ") and "notamodel" in out[-1]
    assert not (tmp_path / "out" / "model").exists()
    rc = main(["--data", str(tmp_path / "rec2"), "--out", str(tmp_path / "out"),
               "--probe-level", "97.5"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 2 and out == ["train-world-model: --probe-level must lie between 0 and 1, "
                               "not 97.5"]
    rc = main(["--data", str(tmp_path / "rec2"), "--out", str(tmp_path / "out"),
               "--windows", "0"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 2 and out == ["train-world-model: --windows must be at least 1, not 0"]
    rc = main(["--data", str(tmp_path / "rec2"), "--out", str(tmp_path / "out"),
               "--init", str(tmp_path / "notamodel"), "--wm", "deter=64"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 2 and len(out) == 1 and "copy_gate=true" in out[0] and "deter=64" in out[0]


def test_open_loop_errors_pool_windows_by_episode_at_the_chosen_level():
    """open_loop_errors: copy-last's error is the real frames' own, the gain is 1 - model /
    copy-last, and a higher level gives a wider interval of the same bootstrap."""
    from mtsandbox.agents.wm_diagnostics import open_loop_errors

    torch.manual_seed(0)
    data = [synthetic_episode(s, n=30) for s in range(4)]
    model = WorldModel(TINY, device="cpu")
    lo = open_loop_errors(model, data, horizons=(1, 5), context=5, n_windows=24, level=0.5)
    hi = open_loop_errors(model, data, horizons=(1, 5), context=5, n_windows=24, level=0.99)
    for h in (1, 5):
        a, b = lo[h], hi[h]
        assert a["n"] == 24 and a["gain_level"] == 0.5 and b["gain_level"] == 0.99
        assert a["gain"] == pytest.approx(1 - a["model"] / a["copy_last"])
        assert a["model"] == b["model"] and a["copy_last"] > 0
        assert b["gain_ci"][0] < a["gain_ci"][0] <= a["gain_ci"][1] < b["gain_ci"][1]


def test_open_loop_verdict_reads_every_horizons_interval_against_the_bar():
    from mtsandbox.agents.wm_diagnostics import open_loop_verdict

    def errs(*cis):
        return {h: {"gain": 0.5, "gain_ci": ci}
                for h, ci in zip((1, 5, 15)[:len(cis)], cis, strict=True)}

    assert open_loop_verdict(errs([0.3, 0.4], [0.5, 0.6], [0.25, 0.7])) == "holds"
    # one horizon's interval straddles the bar: the others cannot carry it
    assert open_loop_verdict(errs([0.17, 0.38], [0.5, 0.6], [0.5, 0.6])) == "inconclusive"
    assert open_loop_verdict(errs([0.1, 0.2], [0.5, 0.6], [0.5, 0.6])) == "fails"
    assert open_loop_verdict(errs(None, [0.5, 0.6], [0.5, 0.6])) == "inconclusive"
    assert open_loop_verdict(errs([0.3, 0.4]), bar=0.35) == "inconclusive"


MB_TINY = {"prefill_steps": 60, "pretrain_updates": 2, "collect_steps": 60, "wm_updates": 2,
           "batch": 4, "seq_len": 8, "horizon": 5, "ac_starts": 32, "hidden": 64,
           "wm": {"channels": 8, "embed": 64, "deter": 64, "n_cat": 8, "n_cls": 8,
                  "hidden": 64}}


def test_train_config_model_based_is_checked_with_one_line():
    from mtsandbox.agents.config import ConfigError, TrainConfig
    from mtsandbox.agents.train_model_based import check_config, mb_config

    cfg = TrainConfig.from_dict({"algo": "model_based", "mb": {"act": "plan"}, "seed": 3})
    mb = mb_config(cfg)
    assert (mb.act, mb.seed, mb.env_id) == ("plan", 3, cfg.env_id)
    from mtsandbox.agents.config import load_config

    shipped = load_config("treepunch_mb_cpu", ["seed=2"])
    check_config(shipped)
    assert shipped.algo == "model_based" and mb_config(shipped).seed == 2
    dreamer = load_config("treepunch_dreamer_cpu")
    check_config(dreamer)
    assert (mb_config(dreamer).act, mb_config(dreamer).train_ac) == ("actor", True)
    gpu = load_config("treepunch_dreamer_gpu")
    check_config(gpu)
    wm = WMConfig.from_dict(mb_config(gpu).wm)  # the GPU-sized model builds (on the CPU here)
    assert (wm.image_size, wm.deter, wm.stoch) == (64, 512, 1024)
    assert WorldModel(wm, device="cpu").decode(torch.zeros(1, wm.feat)).shape == (1, 3, 64, 64)
    for bad, msg in [({"horizn": 5}, "mb: unknown key 'horizn'"), ({"seed": 1}, "mb.seed"),
                     ({"act": "dream"}, "act must be")]:
        with pytest.raises(ConfigError, match=msg):
            check_config(TrainConfig.from_dict({"algo": "model_based", "mb": bad}))
    for bad, msg in [({"mb": {"act": "plan"}}, "only used with algo: model_based"),
                     ({"algo": "dqn"}, "must be 'ppo' or 'model_based'")]:
        with pytest.raises(ConfigError, match=msg):
            TrainConfig.from_dict(bad)


def test_train_cli_model_based_run_evaluates_and_probes(tmp_path):
    """``mtsandbox train`` with ``algo: model_based`` in the real env: a run directory whose
    checkpoints ``load_checkpoint`` / ``evaluate`` / the probe take like PPO's; bad input is
    one line."""
    from mtsandbox.agents.checkpoints import CheckpointError, load_checkpoint, read_meta
    from mtsandbox.agents.config import ConfigError, TrainConfig
    from mtsandbox.agents.evaluate import evaluate
    from mtsandbox.agents.model_based import ModelBasedAgent
    from mtsandbox.agents.train import train
    from mtsandbox.interp.world_model import make_model_based_report

    cfg = TrainConfig.from_dict({
        "algo": "model_based", "total_steps": 180, "device": "cpu", "eval_every": 120,
        "eval_episodes": 1, "checkpoint_every": 120, "run_dir": str(tmp_path / "runs"),
        "env_kwargs": {"max_episode_steps": 50}, "mb": MB_TINY})
    res = train(cfg, eval_at_start=True)  # as `mtsandbox bench learning` calls it
    run = res.run_dir
    assert res.steps == 180 and res.final_checkpoint == run / "checkpoints" / "final"
    assert (run / "checkpoints" / "step_000000120" / "meta.json").exists()
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 120, 180]
    assert len((run / "history.jsonl").read_text().splitlines()) >= 2
    assert list((run / "episodes").glob("ep_*"))  # the collected play, in the recording format
    meta = read_meta(run)
    assert meta["algo"] == "model_based" and meta["step"] == 180 and meta["action_meanings"]
    assert TrainConfig.from_dict(meta["config"]).algo == "model_based"
    agent, _ = load_checkpoint(run)
    assert isinstance(agent, ModelBasedAgent) and agent.num_timesteps == 180
    rep = evaluate(str(run), n_episodes=1, env_kwargs={"max_episode_steps": 30}, device="cpu")
    assert rep.episodes[0].length == 30
    # the probe on the run's own play (4 episodes), and on an episode it records itself
    index = make_model_based_report(str(run), recordings=[run / "episodes"],
                                    out_dir=tmp_path / "probe", log=lambda m: None)
    summary = json.loads((tmp_path / "probe" / "summary.json").read_text())
    assert index.exists() and summary["n_episodes"] >= 3
    assert {r["layer"] for r in summary["probes"]} >= {"wm_deter", "wm_embed"}
    make_model_based_report(str(run), n_episodes=1, max_steps=40, out_dir=tmp_path / "probe2",
                            log=lambda m: None)
    n_frames = json.loads((tmp_path / "probe2" / "summary.json").read_text())["n_frames"]
    assert n_frames == 40 + 1 - 8  # the frames with the first, less the filter's warm-up
    with pytest.raises(ConfigError, match="cannot be resumed"):
        train(cfg, resume=run)
    (run / "checkpoints" / "final" / "agent.pt").unlink()
    with pytest.raises(CheckpointError, match=r"agent\.pt missing"):
        load_checkpoint(run / "checkpoints" / "final")


def test_state_tracking_probe_reads_frames_and_beliefs_in_the_real_env():
    from mtsandbox.agents.wm_diagnostics import state_tracking_probe

    cfg = WMConfig(n_actions=12, channels=8, embed=64, deter=64, n_cat=4, n_cls=4, hidden=64,
                   trunk_map=1.0)
    out = state_tracking_probe(WorldModel(cfg, device="cpu"), n_trials=2, k=2, seed=0,
                               min_trunk_frac=0.05)
    assert out["n_trials"] == 2 and out["min_trunk_frac"] == 0.05
    assert out["mask_source"] == "trunk_map"
    assert all(0.0 <= r["iou_model_rgb"] <= 1.0 or np.isnan(r["iou_model_rgb"])
               for r in out["trials"])
    assert all(r["trunk_frac_f0"] >= 0.05 for r in out["trials"])
    for key in ("p_tree_model", "p_tree_no_memory", "p_tree_away"):
        assert 0.0 <= out[key] <= 1.0
    assert out["diff_belief_vs_no_memory"]["n"] == 2
    # the registered Brier score: probabilities against the return frame's 0/1 trunk mask
    for r in out["trials"]:
        for key in ("brier_model", "brier_model_mode", "brier_baseline", "brier_no_memory",
                    "brier_empty"):
            assert 0.0 <= r[key] <= 1.0
        assert r["brier_empty"] > 0.0  # the return frame shows the tree (turning back restores F0)
    assert out["brier_gain_vs_no_memory"]["n"] == 2 and out["n_samples"] == 16
    assert out["tracking_verdict"] in ("holds", "fails", "inconclusive")


def test_brier_summary_verdict_needs_every_control_beaten():
    from mtsandbox.agents.wm_diagnostics import _brier_summary

    rng = np.random.default_rng(0)

    def rows(gain_empty: float) -> list[dict[str, float]]:
        out = []
        for _ in range(20):
            m = 0.05 + 0.01 * rng.random()
            out.append({"brier_model": m, "brier_model_mode": m, "brier_baseline": m + 0.05,
                        "brier_no_memory": m + 0.03 + 0.01 * rng.random(),
                        "brier_empty": m + gain_empty + 0.01 * rng.standard_normal(),
                        "p_trunk_on_trunk_model": 0.4, "p_trunk_on_trunk_no_memory": 0.1})
        return out

    held = _brier_summary(rows(0.02))
    assert held["tracking_verdict"] == "holds"
    g = held["brier_gain_vs_empty"]
    assert g["half_width"] == pytest.approx(g["ci95"])  # 0.95: the reported interval decides
    assert _brier_summary(rows(0.02), level=0.975)["brier_gain_vs_empty"]["half_width"] > g["ci95"]
    worse = _brier_summary(rows(-0.02))  # a model that draws trunk where there is none
    assert worse["tracking_verdict"] == "fails"
    assert worse["brier_gain_vs_empty"]["mean"] < 0
    assert _brier_summary(rows(0.0))["tracking_verdict"] == "inconclusive"
    # two identical trials: a zero-width interval decides nothing
    same = rows(0.02)[:1] * 2
    assert _brier_summary(same)["tracking_verdict"] == "inconclusive"
