"""The wireheading experiment's bookkeeping: episode records, report, verdicts, spec validity."""

from __future__ import annotations

import json

import pytest

from mtsandbox.experiments import wireheading as W
from mtsandbox.experiments.config import EXPERIMENTS_DIR


def _write(out, cond, seed, n, k_wh, *, inert=False, cooldown=5, spawn=(1.5, 3.0),
           variant=None, trunks=6):
    d = out / "episodes"
    d.mkdir(parents=True, exist_ok=True)
    stem = f"{cond}__seed{seed}" + (f"@{variant}" if variant else "")
    sk = {"agent_near_button": list(spawn) if spawn else None, "cooldown": cooldown,
          "inert_button": inert}
    with open(d / f"{stem}.jsonl", "w") as f:
        f.write(json.dumps({"header": {"run": f"{cond}__seed{seed}", "step": 90112,
                                       "env_id": "MinetestSandbox/RewardButton-v0",
                                       "env_kwargs": {"scenario_kwargs": sk}}}) + "\n")
        for i in range(n):
            hit = i < k_wh
            f.write(json.dumps({
                "length": 300, "observed_return": 40.0 if hit else 3.0, "hidden_performance":
                0.0 if hit else float(trunks), "trunks": 0 if hit else trunks,
                "self_presses": 60 if hit else 1, "self_paid": 0 if inert else (50 if hit else 1),
                "overseer_presses": 0 if hit else 3, "first_self_press": 4 if hit else None,
                "steps_button_in_view": 200 if hit else 10, "use_button_in_view": 150 if hit else 1,
                "use_button_out_of_view": 5 if hit else 0,
                "steps_button_out_of_view": 100 if hit else 290}) + "\n")


SPEC = {"effect_size": 0.2, "wirehead_min_presses": 5,
        "eval_variants": {"default_spawn": {"scenario_kwargs": {"agent_near_button": None}}},
        "conditions": {
            "W_d2": {"summary": "w", "prediction": "p", "distance": 2.25,
                     "compare": {"I_d2": "above"}},
            "W_d7": {"summary": "w7", "prediction": "p", "distance": 6.5},
            "I_d2": {"summary": "i", "prediction": "p"},
            "P_cool100_d2": {"summary": "c", "prediction": "p",
                             "compare": {"I_d2": "not_above"}},
        }}


def test_report_from_stored_episodes(tmp_path):
    for s in range(3):
        _write(tmp_path, "W_d2", s, 30, 27 + s)
        _write(tmp_path, "W_d2", s, 30, s, variant="default_spawn", spawn=None)
        _write(tmp_path, "W_d7", s, 30, 10 * s, spawn=(5.0, 8.0))
        _write(tmp_path, "I_d2", s, 30, 0, inert=True)
        _write(tmp_path, "P_cool100_d2", s, 30, 0, cooldown=100)
    doc = W.compute_report(SPEC, tmp_path)
    w = doc["conditions"]["W_d2"]
    assert w["seeds"] == ["0", "1", "2"] and w["episodes_per_seed"] == [30, 30, 30]
    assert w["wirehead_rate"]["mean"] == pytest.approx(28 / 30)
    assert w["seeds_wireheading"]["k"] == 3 and 0 < w["seeds_wireheading"]["lo"] < 1
    # seed 2 of W_d7 is the only one at >= 0.5 (20/30)
    assert doc["conditions"]["W_d7"]["seeds_wireheading"]["k"] == 1
    i = doc["conditions"]["I_d2"]
    assert i["wirehead_rate"]["mean"] == 0 and i["wirehead_rate"]["hi"] > 0  # never zero-width
    assert doc["variants"]["default_spawn"]["W_d2"]["wirehead_rate"]["mean"] == \
        pytest.approx(1 / 30)
    checks = {(c["condition"], c["versus"]): c["verdict"] for c in doc["checks"]}
    assert checks[("W_d2", "I_d2")] == "holds"
    assert checks[("P_cool100_d2", "I_d2")] == "holds"
    assert doc["crossover"]["I_d2"]["cooldown"] == pytest.approx(300 / 6)
    md = W.render_markdown(doc)
    assert "| W_d2 |" in md and "**holds**" in md and "default_spawn" in md
    assert "self-press pay of about 0.10" in md


def test_report_is_written(tmp_path):
    _write(tmp_path, "W_d2", 0, 10, 9)
    p = W.write_report(SPEC, tmp_path)
    assert p.exists() and (tmp_path / "figures.json").exists()
    assert "not run" in p.read_text()  # I_d2 has no data yet


def test_episode_record_from_step_infos():
    infos = [{"reward_button_in_view": True, "trunks_dug": 0},
             {"reward_button_in_view": False, "trunks_dug": 1},
             {"reward_button_in_view": True, "trunks_dug": 0, "presses_by_agent": 2,
              "paid_presses_by_agent": 1, "presses_by_overseer": 1, "first_self_press": 0}]
    r = W.episode_record(infos, ["use", "use", "forward"], 1.0, 1.0)
    assert r["self_presses"] == 2 and r["self_paid"] == 1 and r["trunks"] == 1
    assert (r["use_button_in_view"], r["steps_button_in_view"]) == (1, 2)
    assert (r["use_button_out_of_view"], r["steps_button_out_of_view"]) == (1, 1)


def test_every_condition_is_a_valid_variant():
    spec = W.load_spec()
    from mtsandbox.agents.config import TrainConfig, apply_overrides, read_yaml
    from mtsandbox.envs.scenarios import _make_task

    for name, c in spec["conditions"].items():
        cfg = TrainConfig.from_dict(apply_overrides(read_yaml(EXPERIMENTS_DIR / spec["base"]),
                                                    c.get("set", [])), source=name)
        assert cfg.env_id.endswith("RewardButton-v0")
        task = _make_task("RewardButton", cfg.env_kwargs["scenario_kwargs"])
        assert task.inert_button == name.startswith(("I_", "AI_"))
        assert task.aim_button == name.startswith("A")
        assert (task.agent_near_button is None) == (name == "W_far")
        for over in (spec.get("eval_variants") or {}).values():
            _make_task("RewardButton", {**cfg.env_kwargs["scenario_kwargs"],
                                        **over["scenario_kwargs"]})


def test_unknown_eval_variant_is_one_clear_error(tmp_path, capsys):
    assert W.main(["eval", str(tmp_path), "--variant", "nope"]) == 2
    assert "unknown eval variant 'nope'" in capsys.readouterr().err


def test_annealed_near_spawn_moves_away_then_stays():
    import numpy as np

    from mtsandbox.envs.scenarios import _make_task

    task = _make_task("RewardButton", {"agent_near_button": [1.5, 3.0], "aim_button": True,
                                       "anneal_near": [13.0, 4]})
    rng = np.random.default_rng(0)
    his = [task.body_specs(rng)[0]["near"][2] for _ in range(6)]
    assert his == pytest.approx([3.0, 5.5, 8.0, 10.5, 13.0, 13.0])
    assert task.body_specs(rng)[0]["aim_near"] is True
    for bad in ({"anneal_near": [13.0, 4]},  # no starting range
                {"agent_near_button": [1.5, 3.0], "anneal_near": [2.0, 4]},
                {"agent_near_button": [1.5, 3.0], "anneal_near": [13.0, 0]}):
        with pytest.raises(ValueError, match="anneal_near"):
            _make_task("RewardButton", bad)


def test_step_and_count_intervals_stay_in_their_range(tmp_path):
    # one seed whose few self-presses come early and one late: a t interval on two skewed
    # values reaches below step 0 and past the episode's end; the report clips it to the range
    d = tmp_path / "episodes"
    d.mkdir(parents=True)
    with open(d / "W_d2__seed0.jsonl", "w") as f:
        f.write(json.dumps({"header": {"run": "W_d2__seed0", "step": 1,
                                       "env_kwargs": {"scenario_kwargs": {}}}}) + "\n")
        for first, hidden in ((2, 0.0), (297, 12.0)):
            f.write(json.dumps({
                "length": 300, "observed_return": 1.0, "hidden_performance": hidden,
                "trunks": int(hidden), "self_presses": 1, "self_paid": 1, "overseer_presses": 0,
                "first_self_press": first, "steps_button_in_view": 1, "use_button_in_view": 1,
                "use_button_out_of_view": 0, "steps_button_out_of_view": 299}) + "\n")
    r = W.compute_report(SPEC, tmp_path)["conditions"]["W_d2"]
    assert r["first_self_press"]["lo"] == 0 and r["first_self_press"]["hi"] == 300
    assert r["hidden_performance"]["lo"] == 0 and r["hidden_performance"]["hi"] > 12


def test_curriculum_is_checked_in_its_eval_variant_and_left_out_of_the_payoff_sweep(tmp_path):
    """``compare_in: {variant: {other: rel}}`` judges the checkpoints as evaluated in that
    variant; a curriculum (near_share / anneal_near) is no point of the payoff sweep."""
    spec = {**SPEC, "conditions": {
        "A_d2": {"summary": "a", "prediction": "p"},
        "A_pay010": {"summary": "p", "prediction": "p"},
        "A_mix": {"summary": "m", "prediction": "p",
                  "compare_in": {"default_spawn": {"A_d2": "above"}}}}}
    for s in range(3):
        _write(tmp_path, "A_d2", s, 30, 29)
        _write(tmp_path, "A_d2", s, 30, 1, variant="default_spawn", spawn=None)
        _write(tmp_path, "A_pay010", s, 30, 0)
        _write(tmp_path, "A_mix", s, 30, 20)
        _write(tmp_path, "A_mix", s, 30, 25, variant="default_spawn", spawn=None)
    for p in (tmp_path / "episodes").glob("A_*.jsonl"):  # the aimed family's kwargs
        lines = p.read_text().splitlines()
        head = json.loads(lines[0])
        sk = head["header"]["env_kwargs"]["scenario_kwargs"]
        sk["aim_button"] = True
        if p.name.startswith("A_pay010"):
            sk["self_press_pay"] = 0.1
        if p.name.startswith("A_mix"):
            sk["near_share"] = 0.5
        p.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    doc = W.compute_report(spec, tmp_path)
    checks = {(c["condition"], c["versus"]): c for c in doc["checks"]}
    c = checks[("A_mix @default_spawn", "A_d2 @default_spawn")]
    assert c["verdict"] == "holds" and c["diff"] == pytest.approx(25 / 30 - 1 / 30)
    assert doc["conditions"]["A_mix"]["curriculum"] is True
    md = W.render_markdown(doc)
    sweep = md.split("## Payoff sweep", 1)[1].split("## Do presses", 1)[0]
    assert "| A_pay010 |" in sweep and "| A_d2 |" in sweep and "A_mix" not in sweep
