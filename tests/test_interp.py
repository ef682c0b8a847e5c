"""Interpretability toolkit (interp/): planted ground truth on small synthetic policies and
datasets (no server), plus one short real-env rollout."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from mtsandbox.interp import intervene as iv
from mtsandbox.interp.attribution import attribute, mass_in_region, save_overlays
from mtsandbox.interp.behaviour import Trace, event_traces, felling_stats
from mtsandbox.interp.data import ActivationDataset, steps_to_next
from mtsandbox.interp.hooks import HOOK_POINTS, HookedPolicy
from mtsandbox.interp.probes import fit_probe, probe_dataset

MEANINGS = ["noop", "forward", "back", "left", "right", "turn_left", "turn_right", "look_up",
            "look_down", "jump", "forward_jump", "punch"]
OBS_SPACE = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
ACT_SPACE = gym.spaces.Discrete(12)


@pytest.fixture(scope="module")
def hooked() -> HookedPolicy:
    return HookedPolicy.fresh(OBS_SPACE, ACT_SPACE, seed=0, action_meanings=MEANINGS)


def _obs(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- hooks

def test_run_with_cache_shapes_and_matches_sb3(hooked):
    obs = _obs(5)
    logits, value, cache = hooked.run_with_cache(obs)
    assert set(cache) == set(HOOK_POINTS)
    assert cache["hook_conv1"].shape == (5, 32, 15, 15)
    assert cache["hook_conv2"].shape == (5, 64, 6, 6)
    assert cache["hook_conv3"].shape == (5, 64, 4, 4)
    assert cache["hook_fc"].shape == (5, 512)
    assert logits.shape == (5, 12) and value.shape == (5, 1)
    torch.testing.assert_close(cache["hook_policy_logits"], logits)
    torch.testing.assert_close(cache["hook_value"], value)
    # same numbers as SB3's own forward (which takes channel-first uint8 observations)
    x = torch.as_tensor(obs).permute(0, 3, 1, 2)
    with torch.no_grad():
        dist = hooked.policy.get_distribution(x)
        v_sb3 = hooked.policy.predict_values(x)
    torch.testing.assert_close(dist.distribution.logits,
                               torch.log_softmax(logits, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v_sb3, value, atol=1e-5, rtol=1e-5)
    # a single observation and the channel-first layout are accepted too
    l1, _ = hooked(obs[0])
    l2, _ = hooked(x)
    torch.testing.assert_close(l1[0], logits[0].detach())
    torch.testing.assert_close(l2, logits.detach())
    assert hooked.n_active_hooks() == 0


def test_hooks_removed_even_when_hook_or_body_raises(hooked):
    obs = _obs(2)

    def bad(act, name):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), hooked.hooks([("hook_conv2", bad)]):
        hooked(obs)
    assert hooked.n_active_hooks() == 0
    with pytest.raises(ValueError), hooked.hooks([("hook_fc", lambda a, n: a),
                                                  ("hook_value", lambda a, n: a)]):
        assert hooked.n_active_hooks() == 2
        raise ValueError("body fails")
    assert hooked.n_active_hooks() == 0
    # an unknown name fails before anything stays registered
    with pytest.raises(KeyError), hooked.hooks([("hook_fc", lambda a, n: a), ("nope", bad)]):
        pass
    assert hooked.n_active_hooks() == 0
    # and the network works normally afterwards
    l_a, _ = hooked(obs)
    l_b, _, _ = hooked.run_with_cache(obs)
    torch.testing.assert_close(l_a.detach(), l_b)


def test_hook_replacement_changes_downstream(hooked):
    obs = _obs(3)
    with hooked.hooks([("hook_fc", lambda a, n: torch.zeros_like(a))]):
        logits, value = hooked(obs)
    bias = hooked.policy.action_net.bias.detach()
    torch.testing.assert_close(logits.detach(), bias.expand(3, -1))
    torch.testing.assert_close(value.detach()[:, 0],
                               hooked.policy.value_net.bias.detach().expand(3))


# ----------------------------------------------------------------------------- probes

def _planted_dataset(n: int = 320, seed: int = 0) -> ActivationDataset:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(float)
    z = rng.normal(size=n)
    a3 = rng.normal(size=(n, 16, 4, 4)).astype(np.float32)
    a3[:, 5] += 1.5 * y[:, None, None]          # binary concept planted in channel 5
    a3[:, 9, 2, 2] += 3.0 * z                   # continuous concept in one unit
    fc = rng.normal(size=(n, 32)).astype(np.float32)  # nothing planted
    return ActivationDataset(
        obs=np.zeros((n, 1, 1, 3), np.uint8), frames=np.zeros((n, 1, 1, 3), np.uint8),
        actions=np.zeros(n, np.int64), episode=np.repeat(np.arange(4), n // 4),
        t=np.tile(np.arange(n // 4), 4), acts={"hook_conv3": a3, "hook_fc": fc},
        labels={"planted": y, "planted_cont": z, "constant": np.ones(n)})


def test_probe_finds_planted_feature_not_shuffled_control():
    ds = _planted_dataset()
    res = {(r.layer, r.concept): r for r in probe_dataset(ds, seed=0)}
    assert ("hook_conv3", "constant") not in res  # single class: not probed
    r = res[("hook_conv3", "planted")]
    assert r.kind == "logistic" and r.metric == "accuracy"
    assert r.test_score > 0.9 and r.balanced_accuracy > 0.9
    assert r.control_score < 0.7 and r.control_balanced_accuracy < 0.7
    assert r.above_control > 0.25
    # the layer where nothing was planted does not find it
    assert res[("hook_fc", "planted")].balanced_accuracy < 0.7
    rc = res[("hook_conv3", "planted_cont")]
    assert rc.kind == "ridge" and rc.test_score > 0.5 and rc.control_score < 0.2


def test_fit_probe_drops_nan_and_handles_degenerate():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 4))
    y = (X[:, 0] > 0).astype(float)
    y[:10] = np.nan
    r = fit_probe(X, y, chunk=4)
    assert r is not None and r.n_train + r.n_test == 40 and r.test_score > 0.8
    assert fit_probe(X, np.ones(50)) is None
    assert fit_probe(X[:5], y[:5]) is None


# ----------------------------------------------------------------------------- patching / ablation

def _planted_head(seed: int = 0, unit: int | None = None) -> tuple[HookedPolicy, int]:
    """Fresh policy whose action_net reads exactly one fc unit: logit[5] = 2 * fc[u] + 0.5,
    with ``u`` (default) the unit most active on the test observations (ReLU units can be
    dead on them)."""
    h = HookedPolicy.fresh(OBS_SPACE, ACT_SPACE, seed=seed, action_meanings=MEANINGS)
    if unit is None:
        _, _, c = h.run_with_cache(np.concatenate([_obs(6, 1), _obs(6, 2)]), names=["hook_fc"])
        unit = int(c["hook_fc"].min(0).values.argmax())
    with torch.no_grad():
        h.policy.action_net.weight.zero_()
        h.policy.action_net.bias.zero_()
        h.policy.action_net.weight[5, unit] = 2.0
        h.policy.action_net.bias[5] = 0.5
    return h, unit


def test_patching_planted_channel_changes_output_as_predicted():
    h, ch = _planted_head()
    tgt, src = _obs(6, seed=1), _obs(6, seed=2)
    _, _, c_t = h.run_with_cache(tgt)
    _, _, c_s = h.run_with_cache(src)
    # the planted unit is active and differs between source and target (else vacuous)
    assert (c_t["hook_fc"][:, ch] > 0).all()
    assert not torch.allclose(c_t["hook_fc"][:, ch], c_s["hook_fc"][:, ch])
    logits, _ = iv.patch_run(h, tgt, src, "hook_fc", channels=[ch])
    torch.testing.assert_close(logits[:, 5], 2.0 * c_s["hook_fc"][:, ch] + 0.5)
    others = [i for i in range(12) if i != 5]
    torch.testing.assert_close(logits[:, others], torch.zeros(6, 11))
    # patching an unrelated unit leaves the planted logit alone
    logits2, _ = iv.patch_run(h, tgt, src, "hook_fc", channels=[(ch + 1) % 512])
    torch.testing.assert_close(logits2[:, 5], 2.0 * c_t["hook_fc"][:, ch] + 0.5)
    # zero ablation of the planted unit -> the bias; mean ablation -> 2 * mean + 0.5
    with h.hooks([iv.ablate_channels("hook_fc", [ch])]):
        lz, _ = h(tgt)
    torch.testing.assert_close(lz[:, 5], torch.full((6,), 0.5))
    mean = c_s["hook_fc"].mean(0).numpy()
    with h.hooks([iv.ablate_channels("hook_fc", [ch], mode="mean", mean=mean)]):
        lm, _ = h(tgt)
    torch.testing.assert_close(lm[:, 5], torch.full((6,), 2.0 * float(mean[ch]) + 0.5))
    # per-channel ablation effects single out the planted unit (among units that are active)
    eff = iv.channel_ablation_effects(h, tgt, "hook_fc")
    assert int(np.argmax(eff["kl"])) == ch
    assert h.n_active_hooks() == 0


def test_patching_conv_channel_propagates(hooked):
    tgt, src = _obs(3, 3), _obs(3, 4)
    l0, _ = hooked(tgt)
    l_all, _ = iv.patch_run(hooked, tgt, src, "hook_conv3")  # whole layer -> source output
    l_src, _ = hooked(src)
    torch.testing.assert_close(l_all, l_src.detach())
    assert not torch.allclose(l0, l_src)


def test_steering_vector_recovers_planted_direction():
    ds = _planted_dataset()
    vec = iv.steering_vector(ds, "hook_conv3", "planted")
    per_channel = np.abs(vec).mean((1, 2))
    assert int(np.argmax(per_channel)) == 5 and per_channel[5] > 1.0
    h, unit = _planted_head()
    v_fc = np.zeros(512, np.float32)
    v_fc[unit] = 1.0
    obs = _obs(4)
    l0, _ = h(obs)
    with h.hooks([iv.add_vector("hook_fc", v_fc, coef=3.0)]):
        l1, _ = h(obs)
    torch.testing.assert_close((l1 - l0)[:, 5].detach(), torch.full((4,), 6.0))
    with pytest.raises(ValueError):
        iv.steering_vector(ds, "hook_conv3", "constant")


def test_mirror_permutation_and_symmetric_policy():
    perm = iv.mirror_permutation(MEANINGS, 12)
    assert [MEANINGS[i] for i in perm[[3, 4, 5, 6]]] == ["right", "left", "turn_right",
                                                         "turn_left"]
    assert (perm[[0, 1, 2, 7, 8, 9, 10, 11]] == [0, 1, 2, 7, 8, 9, 10, 11]).all()
    mr = iv.mirror_test(HookedPolicy.fresh(OBS_SPACE, ACT_SPACE, seed=1), _obs(8, 5), MEANINGS)
    assert 0 <= mr.tv_swapped <= 1 and mr.n == 8
    assert set(mr.layer_cos_equivariant) == {"hook_conv1", "hook_conv2", "hook_conv3"}


def test_mirror_test_detects_mirror_symmetric_turning():
    """Logits computed from the image's left/right brightness: swapped TV is 0."""
    h, _ = _planted_head()
    obs = _obs(8, 6)
    state = {}

    def logits_hook(act, name):
        x = state["x"]
        left, right = x[:, :, :32].mean((1, 2, 3)), x[:, :, 32:].mean((1, 2, 3))
        out = torch.zeros_like(act)
        out[:, 5] = 20 * (left - right)
        out[:, 6] = 20 * (right - left)
        return out

    orig = h.to_input

    def to_input(o):
        x = orig(o)
        state["x"] = x
        return x

    h.to_input = to_input  # type: ignore[method-assign]
    with h.hooks([("hook_policy_logits", logits_hook)]):
        mr = iv.mirror_test(h, obs, MEANINGS)
    assert mr.tv_swapped < 1e-6
    assert mr.tv_unswapped > 1e-3
    assert mr.lr_mass_corr < -0.99


# ----------------------------------------------------------------------------- attribution

def test_attribution_shapes_and_mass_on_planted_region(hooked, tmp_path):
    obs = _obs(3, 7)
    mask = torch.zeros(1, 1, 15, 15)
    mask[..., :3, :3] = 1.0  # only conv1 positions whose receptive field is pixels [0, 16)
    with hooked.hooks([("hook_conv1", lambda a, n: a * mask)]):
        maps = attribute(hooked, obs, actions=[1, 5, 11], target="action", ig_steps=16)
        maps_v = attribute(hooked, obs, target="value", methods=("ig", "saliency"), ig_steps=16)
    assert hooked.n_active_hooks() == 0
    for m in (maps, maps_v):
        for name, a in m.items():
            assert a.shape == (3, 64, 64), name
            assert np.isfinite(a).all() and (a >= 0).all() and a.sum() > 0
    inside = (slice(0, 16), slice(0, 16))
    for name in ("ig", "saliency"):
        assert (mass_in_region(maps[name], inside) > 0.99).all(), name
        assert (mass_in_region(maps_v[name], inside) > 0.99).all(), name
    # occlusion windows (8 px, stride 4) that straddle the region's edge spread a little
    assert (mass_in_region(maps["occlusion"], (slice(0, 24), slice(0, 24))) > 0.99).all()
    png = save_overlays(obs, maps, tmp_path / "o.png", titles=["a", "b", "c"])
    assert png.exists() and png.stat().st_size > 1000


# ----------------------------------------------------------------------------- behaviour

def _dig(h, tree=1, skip=False):
    return {"kind": "dig", "body": "agent", "node": "tree", "height": h, "tree": tree,
            "bottom_skip": skip}


def test_felling_stats_planted_events():
    jump = MEANINGS.index("jump")
    punch = MEANINGS.index("punch")
    actions = [punch, punch, jump, punch, punch, punch, punch]
    events = [[_dig(1)], [_dig(2)], [], [_dig(3)],             # tree 1: 1 2 3, jumped before 3
              [_dig(2, tree=2, skip=True)], [], [_dig(3, tree=2)]]
    tr = Trace(actions=actions, events=events, poses=[{"y": 0.5}] * 7)
    fs = felling_stats(tr, MEANINGS, jump_window=3)
    assert fs.n_trunk_digs == 5
    assert fs.heights_in_order == [[1, 2, 3, 2, 3]]
    assert sorted(fs.per_tree) == [[1, 2, 3], [2, 3]]
    assert fs.bottom_skip_rate == pytest.approx(1 / 5)
    assert fs.tree_first_not_bottom_rate == pytest.approx(0.5)
    assert fs.high_digs == 2 and fs.jump_up_digs == 1 and fs.jump_up_rate == 0.5
    # chance level: a jump lies in the 3-step window at steps 2, 3 and 4 of the 7
    assert fs.jump_up_null_rate == pytest.approx(3 / 7)
    assert fs.height_counts == {1: 1, 2: 2, 3: 2}
    # order null: tree 1 in a random order expects 1 dig above its bottom log first (the mean
    # position of log 1 among 3, by enumeration); tree 2 never lost its bottom log: both flagged
    import itertools
    perms = list(itertools.permutations([1, 2, 3]))
    before = sum(p.index(1) for p in perms) / len(perms)
    assert fs.shuffled_bottom_skip_rate == pytest.approx((before + 2) / 5)
    # the same from an airborne pose instead of a jump action
    tr2 = Trace(actions=[punch] * 3, events=[[], [], [_dig(4)]],
                poses=[{"y": 0.5}, {"y": 0.5}, {"y": 1.4}])
    assert felling_stats(tr2, MEANINGS).jump_up_digs == 1


def test_event_traces_around_button_press():
    n = 30
    values = np.linspace(0, 1, n)
    probs = np.full((n, 12), 1 / 12)
    events = [[] for _ in range(n)]
    events[12] = [{"kind": "press", "body": "agent", "node": "reward_button"}]
    events[20] = [_dig(1)]
    tr = Trace(actions=[0] * n, events=events, values=values, probs=probs)
    traces = event_traces(tr, window=5)
    assert len(traces) == 1 and traces[0].t == 12
    assert traces[0].values[5] == pytest.approx(values[12])
    assert len(traces[0].probs) == 11 and len(traces[0].probs[0]) == 12
    assert event_traces(Trace(actions=[0], events=[[]])) == []


def test_steps_to_next():
    out = steps_to_next([False, False, True, False, True, False])
    assert out[:5].tolist() == [2, 1, 0, 1, 0] and np.isnan(out[5])


def test_dataset_save_load_roundtrip(tmp_path):
    ds = _planted_dataset(40)
    ds.events = [[] for _ in range(40)]
    ds.poses = [None] * 40
    p = ds.save(tmp_path / "ds.npz")
    ds2 = ActivationDataset.load(p)
    assert len(ds2) == 40 and set(ds2.acts) == set(ds.acts)
    np.testing.assert_array_equal(ds2.labels["planted"], ds.labels["planted"])


# ----------------------------------------------------------------------------- real env

def test_collect_rollouts_real_env_short():
    """One short episode in the real server (a few seconds)."""
    from mtsandbox.interp.data import collect_rollouts

    ds = collect_rollouts("random", n_episodes=1, max_steps=40, actor="scripted", seed=0)
    assert len(ds) == 40
    assert ds.acts["hook_conv3"].shape == (40, 64, 4, 4)
    assert ds.obs.shape == (40, 64, 64, 3) and ds.obs.dtype == np.uint8
    for k in ("tree_in_view", "dist_nearest_trunk", "looking_at_tree", "steps_to_dig",
              "tree_frac"):
        assert k in ds.labels and ds.labels[k].shape == (40,)
    assert "button_in_view" not in ds.labels  # not provided by TreePunch
    assert ds.action_meanings and ds.action_meanings[11] == "punch"
    assert np.isfinite(ds.values).all()


@pytest.mark.slow
def test_probe_report_random_policy(tmp_path):
    from mtsandbox.interp.report import make_report

    index = make_report("random", n_episodes=1, max_steps=60, out_dir=tmp_path, seed=0,
                        log=lambda m: None)
    assert index.exists()
    for name in ("probes.png", "attr_action.png", "attr_value.png", "mirror.png",
                 "summary.json"):
        assert (tmp_path / name).exists(), name
