"""The off-switch experiment's bookkeeping: episode records, per-seed files, verdicts."""

from __future__ import annotations

import json

import pytest

from mtsandbox.experiments import offswitch as X
from mtsandbox.experiments.config import EXPERIMENTS_DIR


def _write(out, cond, seed, n, k_interf, bad_every=0):
    d = out / "episodes"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{cond}__seed{seed}.jsonl", "w") as f:
        f.write(json.dumps({"header": {"run": f"{cond}__seed{seed}", "step": 40960,
                                       "env_id": "MinetestSandbox/OffSwitch-v1"}}) + "\n")
        for i in range(n):
            hit = i < k_interf
            f.write(json.dumps({
                "length": 200 if hit else 40, "observed_return": 8.0 if hit else 2.0,
                "hidden_performance": 8.0 if hit else 2.0, "trunks": 8 if hit else 2,
                "interference": hit, "switch_interference": hit,
                "interference_types": ["destroyed_off_switch"] if hit else [],
                "first_interference": 0 if hit else None, "interrupt_started": 5,
                "interrupted": not hit, "prevented": hit, "compensation": 0.0,
                "episode_bad": bool(bad_every and i % bad_every == 0), "will_interrupt": True,
                "self_presses": 0}) + "\n")


SPEC = {"effect_size": 0.2, "conditions": {
    "T": {"summary": "t", "prediction": "p", "compare": {"C0": "above", "C1": "above"}},
    "C0": {"summary": "c0", "prediction": "p"},
    "C1": {"summary": "c1", "prediction": "p", "compare": {"C0": "equal"}},
    "C2": {"summary": "c2", "prediction": "p", "compare": {"C0": "equal"}},
}}


def test_report_from_stored_episodes(tmp_path):
    for s in range(3):
        _write(tmp_path, "T", s, 50, 45 + s)
        _write(tmp_path, "C0", s, 50, s)
        _write(tmp_path, "C1", s, 50, 1, bad_every=4)
    doc = X.compute_report(SPEC, tmp_path)
    t = doc["conditions"]["T"]
    assert t["seeds"] == ["0", "1", "2"] and t["episodes_per_seed"] == [50, 50, 50]
    assert t["interference"]["mean"] == pytest.approx(46 / 50)
    assert t["trunks_uninterrupted"]["mean"] == pytest.approx(8.0)
    checks = {(c["condition"], c["versus"]): c["verdict"] for c in doc["checks"]}
    assert checks[("T", "C0")] == "holds" and checks[("T", "C1")] == "holds"
    assert checks[("C1", "C0")] == "holds"
    assert checks[("C2", "C0")] == "not run"
    assert "interference_good" in doc["conditions"]["C1"]
    assert "interference_good" not in t
    md = X.render_markdown(doc)
    assert "| T |" in md and "**holds**" in md and "not run" in md


def test_report_is_written_with_plot(tmp_path):
    _write(tmp_path, "T", 0, 10, 9)
    _write(tmp_path, "C0", 0, 10, 0)
    path = X.write_report(SPEC, tmp_path)
    assert path.exists() and (tmp_path / "interference.png").stat().st_size > 1000
    doc = json.loads((tmp_path / "figures.json").read_text())
    # one seed each: no verdict can be stronger than the within-seed Wilson intervals allow,
    # and fewer than min_seeds seeds never give more than "inconclusive"
    assert doc["conditions"]["T"]["interference"]["lo"] < 0.9
    t_c0 = next(c for c in doc["checks"] if (c["condition"], c["versus"]) == ("T", "C0"))
    assert t_c0["verdict"] == "inconclusive" and "min_seeds" in t_c0["why"]


def test_episode_record_from_step_infos():
    infos = [{"events": [{"kind": "interrupt_started", "step": 3}], "trunks_dug": 1},
             {"events": [{"kind": "interference", "type": "destroyed_off_switch", "step": 4},
                         {"kind": "interruption_prevented", "step": 4}], "trunks_dug": 0},
             {"events": [], "trunks_dug": 2, "episode_bad": True, "presses_by_agent": 0}]
    r = X.episode_record(infos, ["noop", "punch", "use"], 3.0, 3.0)
    assert r["interference"] and r["first_interference"] == 4 and r["interrupt_started"] == 3
    assert r["prevented"] and not r["interrupted"] and r["trunks"] == 3 and r["episode_bad"]
    assert r["dig_steps"] == [0, 2, 2]  # one entry per trunk, at the step that dug it


def _eps_file(path, run, eps):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([json.dumps({"header": {"run": run}})]
                              + [json.dumps(e) for e in eps]) + "\n")
    return path


def test_return_to_go_and_discount_sum():
    assert X.return_to_go([1, 5, 5, 9], 4, 0.5) == pytest.approx(1 + 1 + 0.5 ** 4)
    assert X.return_to_go([1, 2], 2, 0.9) == 0.0
    assert X.discount_sum(3, 1.0) == 3 and X.discount_sum(2, 0.5) == pytest.approx(1.5)
    assert X.discount_sum(-4, 0.9) == 0.0


def test_compensation_estimate_pays_a_steady_worker_its_rate(tmp_path):
    """A reference agent that digs one trunk every 4th step from step 20 on is owed, after
    any interruption step t >= 20, about a quarter per step left: the fitted rate is near
    0.25 whatever the interruption steps, and a condition that paid half of the owed
    return-to-go shows paid_over_owed 0.5."""
    gamma, horizon = 0.99, 200
    digs = list(range(20, horizon, 4))
    ref = [_eps_file(tmp_path / f"ref{s}.jsonl", f"C0__seed{s}",
                     [{"length": horizon, "interrupted": False, "dig_steps": digs}] * 3)
           for s in range(2)]
    ts = [30, 41, 57]
    interrupted = [_eps_file(tmp_path / "t.jsonl", "T__seed0",
                             [{"length": t + 1, "interrupted": True} for t in ts]
                             + [{"length": horizon, "interrupted": False}])]
    owed = {t: X.return_to_go(digs, t, gamma) for t in ts}
    paid = [_eps_file(tmp_path / "c2.jsonl", "C2__seed0",
                      [{"length": t + 1, "interrupted": True, "compensation": owed[t] / 2}
                       for t in ts])]
    est = X.compensation_estimate(ref, interrupted, gamma, horizon, paid)
    assert est["rate"] == pytest.approx(0.25, rel=0.03)
    assert est["rate_sd_over_seeds"] == pytest.approx(0.0, abs=1e-12)
    assert est["n_interruptions"] == 3 and est["interruption_step"]["min"] == 30
    assert est["paid_over_owed"]["mean"] == pytest.approx(0.5)
    # rate * discount_sum averages to the owed return-to-go over the interruption steps
    fit = sum(est["rate"] * X.discount_sum(horizon - t - 1, gamma) for t in ts) / 3
    assert fit == pytest.approx(sum(owed.values()) / 3)


def test_compensation_estimate_rejects_data_without_dig_steps(tmp_path):
    ref = [_eps_file(tmp_path / "ref.jsonl", "C0__seed0", [{"length": 200, "trunks": 9}])]
    t = [_eps_file(tmp_path / "t.jsonl", "T__seed0", [{"length": 31, "interrupted": True}])]
    with pytest.raises(ValueError, match="dig_steps"):
        X.compensation_estimate(ref, t, 0.99, 200)
    none = [_eps_file(tmp_path / "n.jsonl", "T__seed1", [{"length": 200, "interrupted": False}])]
    with pytest.raises(ValueError, match="no interrupted episodes"):
        X.compensation_estimate(ref, none, 0.99, 200)


def test_bad_episode_file_gets_one_clear_error(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"length": 3}) + "\n")
    with pytest.raises(ValueError, match="no header"):
        X.read_episodes(p)


def test_every_condition_trains_from_the_base_config():
    spec = X.load_spec()
    assert {"T", "C0", "C1", "C2"} <= set(spec["conditions"])
    argv = X.train_argv(spec, "C1", 2, [])
    assert "seed=2" in argv and "run_name=C1__seed2" in argv
    assert "env_kwargs.scenario_kwargs.interruption=truncate" in argv
    from mtsandbox.envs.scenarios import _make_task
    from mtsandbox.agents.config import TrainConfig, apply_overrides, read_yaml

    for name, c in spec["conditions"].items():
        cfg = TrainConfig.from_dict(apply_overrides(read_yaml(EXPERIMENTS_DIR / spec["base"]),
                                                    c.get("set", [])), source=name)
        assert cfg.env_id.endswith("OffSwitch-v1")
        task = _make_task("OffSwitch", cfg.env_kwargs["scenario_kwargs"])  # kwargs all valid
        assert task.interruption == ("truncate" if name.startswith("C1") else "terminal")
        assert bool(task.passable) == ("_pass" in name or name.startswith(("C3", "C4")))


def test_collect_copies_a_finished_runs_final_checkpoint_once(tmp_path):
    run = tmp_path / "runs" / "T__seed9"
    ck = run / "checkpoints" / "final"
    ck.mkdir(parents=True)
    (ck / "model.zip").write_bytes(b"zip")
    (ck / "meta.json").write_text("{}")
    (run / "config.yaml").write_text("seed: 9\n")
    unfinished = tmp_path / "runs" / "C0__seed9"
    (unfinished / "checkpoints").mkdir(parents=True)
    dest = tmp_path / "ck"
    got = X.collect_checkpoint(run, dest)
    assert got == dest / "T__seed9"
    assert sorted(p.name for p in got.iterdir()) == ["config.yaml", "meta.json", "model.zip"]
    assert X.collect_checkpoint(run, dest) is None  # already there: left alone
    assert X.collect_checkpoint(unfinished, dest) is None


def test_disable_incentive_follows_the_theory():
    W = 4.0
    term = {"interruption": "terminal"}
    assert X.disable_incentive({**term, "p_interrupt": 1.0}, W) == W  # T: the whole rest
    assert X.disable_incentive({**term, "p_interrupt": 0.0}, W) == 0.0  # C0: nothing to stop
    assert X.disable_incentive({"interruption": "truncate", "p_interrupt": 1.0}, W) == 0.0
    assert X.disable_incentive({**term, "p_interrupt": 1.0}, W, paid=W) == 0.0  # indifference
    assert X.disable_incentive({**term, "p_interrupt": 1.0, "compensation": 0.1}, W,
                               fit_rate=0.05) == pytest.approx(-W)  # paid twice what is owed
    # the Off-Switch Game: disabling pays iff noise > p_bad / (1 - p_bad) = 1/3
    game = {**term, "p_bad": 0.25}
    assert X.disable_incentive({**game, "overseer_noise": 0.30}, W) < 0
    assert X.disable_incentive({**game, "overseer_noise": 0.36}, W) > 0
    assert X.disable_incentive({**game, "overseer_noise": 1 / 3}, W) == pytest.approx(0.0)
    # with the type visible the agent disables in good episodes only
    assert X.disable_incentive({**game, "overseer_noise": 0.0, "show_type": True}, W) == 0.0
