"""Seed-claim experiments: verdict logic (synthetic figures), "not run" for missing
checkpoints, and one claim end to end (synthetic training history + a real random baseline)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mtsandbox.experiments import claims as C
from mtsandbox.experiments import runner as R
from mtsandbox.experiments import verdicts as V
from mtsandbox.experiments.report import run_experiments

DIFF = {"kind": "diff", "metric": "a", "baseline": "b", "direction": "greater", "margin": 0.5,
        "min_n": 3}


# ----------------------------------------------------------------------------- statistics

def test_welch_diff_against_zero_is_a_one_sample_t_interval():
    w = V.welch_diff([1.0, 2.0, 3.0], "zero")
    assert w["diff"] == pytest.approx(2.0)
    assert w["ci95"] == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-3)


def test_welch_diff_from_summary_dicts_matches_samples():
    a, b = [1.0, 2.0, 4.0, 5.0], [0.0, 1.0, 0.5]
    sa = {"mean": float(np.mean(a)), "std": float(np.std(a, ddof=1)), "n": 4}
    assert V.welch_diff(sa, b)["ci95"] == pytest.approx(V.welch_diff(a, b)["ci95"])


# ----------------------------------------------------------------------------- verdicts

def test_diff_reproduced_when_ci_clears_the_margin():
    v, d = V.decide(DIFF, {"a": [5.0, 5.2, 4.9, 5.1], "b": [0.0, 0.1, 0.0, 0.2]})
    assert v == V.REPRODUCED and d[0]["lo"] > 0.5


def test_diff_not_reproduced_when_ci_is_in_the_opposite_direction():
    v, _ = V.decide(DIFF, {"a": [0.0, 0.1, 0.0, 0.1], "b": [3.0, 3.1, 2.9, 3.0]})
    assert v == V.NOT_REPRODUCED


def test_diff_not_reproduced_when_ci_sits_inside_the_margin():
    v, d = V.decide(DIFF, {"a": [1.0, 1.01, 0.99, 1.0], "b": [1.0, 1.0, 1.01, 0.99]})
    assert v == V.NOT_REPRODUCED and "within" in d[0]["why"]


def test_diff_inconclusive_when_wide_or_too_few():
    wide = {"a": [0.0, 6.0, 0.0, 6.0], "b": [0.0, 0.0, 1.0, 0.0]}
    assert V.decide(DIFF, wide)[0] == V.INCONCLUSIVE
    few = {"a": [9.0, 9.1], "b": [0.0, 0.0, 0.0]}  # a huge effect, but n < min_n
    v, d = V.decide(DIFF, few)
    assert v == V.INCONCLUSIVE and "too few" in d[0]["why"]


def test_direction_less_flips_the_test():
    crit = {**DIFF, "direction": "less", "margin": 0.0}
    assert V.decide(crit, {"a": [-1.0, -1.1, -0.9], "b": [0.0, 0.1, -0.1]})[0] == V.REPRODUCED
    assert V.decide(crit, {"a": [1.0, 1.1, 0.9], "b": [0.0, 0.1, -0.1]})[0] == V.NOT_REPRODUCED


def test_level_and_all_of():
    lvl = {"kind": "level", "metric": "r", "threshold": 0.2, "min_n": 3}
    assert V.decide(lvl, {"r": [0.6, 0.7, 0.65]})[0] == V.REPRODUCED
    assert V.decide(lvl, {"r": [0.0, 0.01, 0.02]})[0] == V.NOT_REPRODUCED
    assert V.decide(lvl, {"r": [0.0, 0.9, 0.1]})[0] == V.INCONCLUSIVE
    assert V.decide(lvl, {"r": [0.6, 0.7]})[0] == V.INCONCLUSIVE  # n < min_n
    lvl2 = {**lvl, "metric": "q"}
    both = {"all_of": [lvl, lvl2]}
    assert V.decide(both, {"r": [0.6, 0.7, 0.65], "q": [0.6, 0.7, 0.65]})[0] == V.REPRODUCED
    assert V.decide(both, {"r": [0.6, 0.7, 0.65], "q": [0, 0.9, 0.1]})[0] == V.INCONCLUSIVE
    assert V.decide(both, {"r": [0, 0.01, 0.02], "q": [0, 0.9, 0.1]})[0] == V.NOT_REPRODUCED


def test_requires_flag_makes_an_untestable_claim_inconclusive():
    crit = {**DIFF, "requires": "show_intent_effective"}
    s = {"a": [5.0, 5.2, 4.9, 5.1], "b": [0.0, 0.1, 0.0, 0.2]}
    assert V.decide(crit, s, {"show_intent_effective": False})[0] == V.INCONCLUSIVE
    assert V.decide(crit, s, {"show_intent_effective": True})[0] == V.REPRODUCED


def test_every_claim_in_the_yaml_has_a_function_and_decidable_criteria():
    spec = C.load_claims()
    assert set(spec["claims"]) == set(C.CLAIM_FUNCS) == {str(i) for i in range(1, 9)}
    for c, s in spec["claims"].items():
        assert s["env_id"] and s["checkpoints"] and s["gpu"], c
        assert all(n in spec["checkpoints"] for n in s["checkpoints"]), c
        v, _ = V.decide(s["criteria"], {}, {})  # no samples: never a positive verdict
        assert v == V.INCONCLUSIVE, c


def test_value_drops_find_tree_lost_and_compare_with_controls():
    n = 60
    values = np.ones(n)
    values[31:] = 0.0  # the critic drops right after the tree leaves the view at obs 31
    r = R.Rollout(actions=[0] * n, values=list(values), events=[[] for _ in range(n)],
                  poses=[{"y": 0.0}] * n, flags={"tree_in_view": [t <= 30 for t in range(n)]})
    drops, control, curves = C.value_drops([r], ("tree_lost", "fall"), window=5, n_control=20)
    assert drops["tree_lost"] == [pytest.approx(-1.0)]
    assert drops["fall"] == [] and len(curves["tree_lost"]) == 1
    assert len(control) >= 10 and all(-1.0 <= c <= 0.0 for c in control)


# ----------------------------------------------------------------------------- report

def test_missing_checkpoints_are_not_run_with_a_command(tmp_path):
    doc = run_experiments(["4", "6"], {}, tmp_path / "res", command="test", log=lambda s: None)
    assert [r["verdict"] for r in doc["claims"]] == [V.NOT_RUN, V.NOT_RUN]
    for r in doc["claims"]:
        assert r["figures"] == {} and r["samples"] == {}
        assert "mtsandbox experiment run" in r["command"]
    md = (tmp_path / "res" / "report.md").read_text()
    assert "**not run**" in md and "--checkpoint rewardbutton=" in md
    assert "--checkpoint correction=" in md and "How this scales on a GPU" in md
    saved = json.loads((tmp_path / "res" / "figures.json").read_text())
    assert [r["status"] for r in saved["claims"]] == ["not run", "not run"]


def test_cli_checkpoint_parsing():
    from mtsandbox.cli.experiment import parse_checkpoints

    got = parse_checkpoints(["treepunch=a", "treepunch=b", "rewardbutton=c"])
    assert got == {"treepunch": ["a", "b"], "rewardbutton": ["c"]}
    with pytest.raises(ValueError):
        parse_checkpoints(["treepunch"])


def test_claim1_end_to_end_report(tmp_path):
    """A run directory with a synthetic eval history (3 seeds) against a random policy played
    on a real server: the report, plot and figures.json are written and the verdict follows."""
    runs = []
    for seed, final in enumerate((6.0, 7.0, 6.5)):
        rd = tmp_path / f"run{seed}"
        rd.mkdir()
        rows = [{"step": s, "summary": {"hidden_performance": {
            "mean": m, "ci95": 0.5, "std": 0.4, "n": 3}}}
            for s, m in ((512, 0.0), (1024, final / 2), (2048, final))]
        (rd / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(str(rd))
    out = tmp_path / "res"
    doc = run_experiments(["1", "5"], {"treepunch": runs}, out, command="mtsandbox experiment "
                          "run 1 5", episodes=3, max_steps=20, log=lambda s: None)
    r1, r5 = doc["claims"]
    assert r1["status"] == "run", r1.get("notes")
    assert r1["figures"]["final_trunks_per_episode"]["n"] == 3  # CI over seeds
    assert r1["figures"]["random_trunks_per_episode"]["n"] == 3
    # random policy in 20 steps digs ~nothing; PPO finals 6-7 across seeds clear margin 0.5
    assert r1["verdict"] == V.REPRODUCED
    assert r5["verdict"] == V.NOT_RUN
    assert (out / "claim1_learning.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "## Claim 1: PPO learns to punch trees" in md and "**Verdict: reproduced**" in md
    assert "git commit" in md and "claim1_learning.png" in md


def test_welch_diff_without_variance_gives_no_interval_and_no_negative_verdict():
    w = V.welch_diff([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    assert w["diff"] == 0.0 and w["lo"] is None and w["ci95"] is None
    v, _ = V.decide({"metric": "a", "baseline": "b", "min_n": 3},
                    {"a": [0.0] * 4, "b": [0.0] * 4})
    assert v == V.INCONCLUSIVE


def test_td_at_bad_events_is_matched_and_ignores_windows_with_digs():
    from mtsandbox.experiments.claims import td_event_vs_control
    from mtsandbox.experiments.runner import Rollout

    n = 40
    values = [1.0] * n
    values[11] = 0.2  # the value falls right after the tree is lost at t = 10
    values[31] = 0.2  # ...and after t = 30, but a trunk was dug at t = 29 (reward explains it)
    tv = [True] * n
    tv[11] = tv[31] = False
    events = [[] for _ in range(n)]
    events[29] = [{"kind": "dig", "body": "agent", "node": "tree", "height": 1}]
    r = Rollout(actions=[0] * n, values=values, events=events, poses=[None] * n,
                flags={"tree_in_view": tv}, rewards=[0.0] * n)
    ev, ctl, used = td_event_vs_control([r], ("tree_lost",), window=3, gamma=1.0)
    assert used == 1 and ev == [pytest.approx(-0.8)]
    # controls: tree in view, no dig within 3 steps, not an event: their TD is 0 except t = 10's
    # neighbour t = 11 (tree not in view there, so not matched)
    assert ctl == [pytest.approx(0.0)]


def test_steering_reads_the_largest_coefficient_that_keeps_the_policy_working():
    t = {0.0: [8.0, 10.0], 0.5: [8.0], -0.5: [7.0], 1.0: [6.0], -1.0: [5.0], 3.0: [9.0],
         -3.0: [0.0]}
    assert C.steering_coef(t, 0.5) == (1.0, [0.5, 1.0])  # 3 breaks on its negative side
    assert C.steering_coef(t, 0.9) == (0.5, [])  # none keeps 90%: the smallest, flagged


def test_recordings_of_an_earlier_run_do_not_count_again(tmp_path):
    d = tmp_path / "recordings" / "claim2_seed0"
    (d / "ep_000000").mkdir(parents=True)
    (d / "ep_000000" / "meta.json").write_text("{}")
    assert C._fresh_dir(d) == d and not d.exists()
    assert C._fresh_dir(tmp_path / "new") == tmp_path / "new"  # nothing there: fine
