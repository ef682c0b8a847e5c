"""The env versioning rule: a default of a registered id cannot change without a new id."""

from __future__ import annotations

import json
import warnings

import pytest

import mtsandbox.envs
from mtsandbox.agents import checkpoints as ckpt
from mtsandbox.envs import scenarios, versions

NS = mtsandbox.envs.NAMESPACE


@pytest.mark.parametrize("env_id", mtsandbox.envs.ALL_IDS)
def test_defaults_of_every_registered_id_are_as_recorded(env_id):
    rec = versions.recorded()
    assert env_id in rec, (f"{env_id} has no recorded fingerprint: run "
                           "`python -m mtsandbox.envs.versions --write`")
    assert versions.fingerprint(env_id) == rec[env_id], (
        f"a default of {env_id} changed: register a new version (-v{{N+1}}) with the new "
        "default and keep the old id as it was; never edit envs/versions.json entries")


def test_changing_a_default_changes_the_fingerprint(monkeypatch, tmp_path):
    before = {i: versions.fingerprint(i) for i in (f"{NS}/OffSwitch-v1", f"{NS}/TreePunch-v0")}
    orig = scenarios.scenario_env_defaults
    monkeypatch.setattr(scenarios, "scenario_env_defaults",
                        lambda s: {**orig(s), "n_trees": 9})  # a dynamics default
    assert versions.fingerprint(f"{NS}/OffSwitch-v1") != before[f"{NS}/OffSwitch-v1"]
    assert versions.main([]) == 1  # the check command fails too
    monkeypatch.setattr(scenarios, "scenario_env_defaults", orig)
    pal = tmp_path / "nodes.yaml"  # an observation default: a node's colour
    pal.write_text(versions.PALETTE_FILE.read_text().replace("#", "#0", 1))
    monkeypatch.setattr(versions, "PALETTE_FILE", pal)
    assert versions.fingerprint(f"{NS}/TreePunch-v0") != before[f"{NS}/TreePunch-v0"]


def test_resolve_fills_every_default_and_rejects_unknown_options():
    r = versions.resolve(f"{NS}/OffSwitch-v1", {"max_episode_steps": 200,
                                                "scenario_kwargs": {"p_interrupt": 1.0}})
    assert r["version"] == 1 and r["max_episode_steps"] == 200
    assert r["task"] == "OffSwitch" and r["task_params"]["interruption"] == "terminal"
    assert r["task_params"]["p_interrupt"] == 1.0 and r["env"]["n_apple_trees"] == 3
    assert "reply_timeout_s" not in r["env"]  # operational, not part of the variant
    v0 = versions.resolve(f"{NS}/OffSwitch-v0")
    assert v0["task_params"]["interruption"] == "truncate"
    with pytest.raises(TypeError, match="unknown environment option 'n_tres'"):
        versions.resolve(f"{NS}/TreePunch-v0", {"n_tres": 3})
    with pytest.raises(ValueError, match="unknown env id"):
        versions.resolve(f"{NS}/Nope-v0")


def _checkpoint(tmp_path, env_id, env_kwargs, resolved):
    ck = tmp_path / "ck"
    ck.mkdir()
    meta = {"format": ckpt.CHECKPOINT_FORMAT, "env_id": env_id, "env_kwargs": env_kwargs,
            "env_resolved": resolved, "env_fingerprint": versions.fingerprint(env_id)}
    (ck / ckpt.META_FILE).write_text(json.dumps(meta))
    return ck


def test_reading_a_checkpoint_warns_when_its_variant_changed(tmp_path):
    env_id, kw = f"{NS}/OffSwitch-v1", {"scenario_kwargs": {"p_interrupt": 1.0}}
    same = versions.resolve(env_id, kw)
    ok = _checkpoint(tmp_path, env_id, kw, same)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt.read_meta(ok)  # nothing changed: no warning
    old = json.loads(json.dumps(same))
    old["task_params"]["show_intent"] = True  # trained with a light the code no longer shows
    (ok / ckpt.META_FILE).write_text(json.dumps({**json.loads((ok / ckpt.META_FILE).read_text()),
                                               "env_resolved": old}))
    ckpt._VARIANT_WARNED.clear()
    with pytest.warns(UserWarning, match=r"task_params\.show_intent: True -> 'off'"):
        ckpt.read_meta(ok)
