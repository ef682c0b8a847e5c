"""Statistics used by every experiment report (experiments/stats.py)."""

from __future__ import annotations

import math
import numpy as np
import pytest

from mtsandbox.experiments.stats import (
    bootstrap_mean_ci,
    iqm_ci,
    rate_ci,
    seed_rate_summary,
    verdict,
)


def test_zero_of_four_is_not_a_zero_width_interval():
    lo, hi = rate_ci(0, 4, "beta")  # Clopper-Pearson
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** 0.25, abs=1e-6)  # 0.602
    lo, hi = rate_ci(0, 4, "wilson")
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.45 < hi < 0.5  # Wilson: 0.490
    assert rate_ci(4, 4)[0] > 0.5 and rate_ci(4, 4)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rate_ci(5, 4)


def test_zero_variance_seeds_never_give_a_zero_width_interval():
    s = seed_rate_summary([(0, 50), (0, 50), (0, 50)])
    assert s.mean == 0.0 and s.lo == 0.0 and s.hi > 0.05
    s = seed_rate_summary([(50, 50)] * 3)
    assert s.hi == pytest.approx(1.0) and s.lo < 0.95
    one = seed_rate_summary([(10, 20)])
    assert one.lo < 0.5 < one.hi and one.n_seeds == 1


def test_between_seed_spread_widens_the_interval_beyond_within_seed_error():
    tight = seed_rate_summary([(25, 50)] * 5)
    spread = seed_rate_summary([(0, 50), (50, 50), (0, 50), (50, 50), (25, 50)])
    assert tight.mean == spread.mean == 0.5
    assert (spread.hi - spread.lo) > (tight.hi - tight.lo) + 0.2


def test_bootstrap_and_iqm_come_from_rliable_and_cover_the_mean():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    lo, hi = bootstrap_mean_ci(x)
    assert lo < x.mean() < hi
    m, lo, hi = iqm_ci(x)
    assert lo <= m <= hi and m == pytest.approx(0.3)


def _s(k, n, seeds=3):
    return seed_rate_summary([(k, n)] * seeds)


def test_verdict_rule():
    high, low = _s(45, 50), _s(1, 50)
    assert verdict(high, low, "above", 0.2)["verdict"] == "holds"
    assert verdict(low, high, "above", 0.2)["verdict"] == "fails"
    assert verdict(low, _s(2, 50), "equal", 0.2)["verdict"] == "holds"
    assert verdict(high, low, "equal", 0.2)["verdict"] == "fails"
    assert verdict(low, _s(2, 50), "not_above", 0.2)["verdict"] == "holds"
    # 0/4 vs 0/4: the data cannot exclude a 0.2 effect, so no negative verdict
    few = seed_rate_summary([(0, 4)])
    assert verdict(few, few, "above", 0.2)["verdict"] == "inconclusive"
    assert verdict(few, few, "equal", 0.2)["verdict"] == "inconclusive"
    with pytest.raises(ValueError):
        verdict(high, low, "below", 0.2)


def test_mean_t_ci_matches_scipy_and_degenerates_visibly():
    from scipy import stats

    from mtsandbox.experiments.stats import mean_t_ci

    x = [1.0, 2.0, 4.0, 7.0]
    lo, hi = mean_t_ci(x)
    h = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
    assert lo == pytest.approx(3.5 - h) and hi == pytest.approx(3.5 + h)
    assert mean_t_ci([3.0]) == (float("-inf"), float("inf"))


def test_mean_over_seeds_never_invents_an_interval():
    from mtsandbox.experiments.stats import mean_over_seeds

    one = mean_over_seeds([[4.0]])
    assert one["mean"] == 4.0 and one["lo"] is None and one["hi"] is None
    r = mean_over_seeds([[1.0, 3.0], [2.0, 6.0], [], [5.0]])
    assert r["per_seed"] == [2.0, 4.0, 5.0]  # the empty seed is left out
    assert r["lo"] < r["mean"] < r["hi"] and all(map(math.isfinite, (r["lo"], r["hi"])))


def test_mean_over_seeds_clips_to_the_metrics_range():
    from mtsandbox.experiments.stats import mean_over_seeds

    shares = [[0.0, 0.0, 1.0], [0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
    free = mean_over_seeds(shares)
    assert free["lo"] < 0  # a t interval on a few 0/1 values reaches below zero
    clipped = mean_over_seeds(shares, (0, 1))
    assert clipped["lo"] == 0.0 and clipped["hi"] == pytest.approx(min(free["hi"], 1.0))
    assert clipped["mean"] == free["mean"] and clipped["hi"] > clipped["mean"]


def test_seed_share_and_fisher():
    from mtsandbox.experiments.stats import seed_fisher_p, seed_share

    a = seed_share([0.9, 0.8, 0.0, 0.7, 0.6])
    b = seed_share([0.0, 0.0, 0.2, 0.0, 0.1])
    assert (a["k"], a["n"], b["k"]) == (4, 5, 0)
    assert b["lo"] == 0.0
    assert b["hi"] > 0.4  # 0/5 seeds: Clopper-Pearson upper bound ~0.52, never zero-width
    assert a["lo"] < 0.8 < a["hi"]
    p_above = seed_fisher_p(a, b, "above")
    assert p_above < 0.05 and seed_fisher_p(b, a, "above") > 0.5
    assert seed_fisher_p(a, a, "equal") == 1.0


def test_learning_check_compares_runs_with_the_seed_as_unit(tmp_path):
    import json as _json

    from mtsandbox.cli.bench_learning import compare_runs

    def run(name, trunks):
        p = tmp_path / f"{name}.json"
        p.write_text(_json.dumps({"ppo": {"curve": [
            {"step": 0, "trunks_per_episode": {"mean": 0.0}},
            {"step": 100_000, "trunks_per_episode": {"mean": trunks}}]}}))
        return p

    a = [run(f"a{i}", t) for i, t in enumerate([12.0, 13.0, 14.0])]
    b = [run(f"b{i}", t) for i, t in enumerate([11.0, 14.0, 13.5])]
    res = compare_runs(a, b)
    assert res["a"]["per_seed"] == [12.0, 13.0, 14.0]  # the last evaluation of each run
    lo, hi = res["diff_ci95"]
    assert lo < res["diff_b_minus_a"] < hi and lo < 0 < hi
    with pytest.raises(ValueError, match="at least 2"):
        compare_runs(a[:1], b)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a bench learning file"):
        compare_runs([bad, bad], b)


def test_learning_target_verdict_from_seed_means(tmp_path):
    """bench learning --target: the verdict at the last shared evaluation follows the seeds'
    interval (reached / not reached / inconclusive), a reference set is compared at the
    steps both evaluated, and a single run is refused."""
    import json as _json

    from mtsandbox.cli.bench_learning import main, target_runs

    def run(name, curve):
        p = tmp_path / f"{name}.json"
        p.write_text(_json.dumps({"agent": {"curve": [
            {"step": s, "trunks_per_episode": {"mean": m, "n": 4}} for s, m in curve]}}))
        return p

    high = [run(f"h{i}", [(8000, 2.0), (16000, t)]) for i, t in enumerate([6.0, 6.5, 7.0])]
    low = [run(f"l{i}", [(16000, t), (32000, t)]) for i, t in enumerate([0.5, 0.25, 0.75])]
    mixed = [run(f"m{i}", [(16000, t)]) for i, t in enumerate([2.0, 9.0, 5.0])]
    res = target_runs(high, 5.0, reference=low)
    assert res["verdict"] == "reached" and res["final"]["per_seed"] == [6.0, 6.5, 7.0]
    assert res["first_step_mean_reaches_target"] == 16000
    assert [r["step"] for r in res["reference"]["curve"]] == [16000]
    assert target_runs(low, 5.0)["verdict"] == "not reached"
    res = target_runs(mixed, 5.0)
    assert res["verdict"] == "inconclusive" and res["mean_reaches_target"]
    lo, hi = res["final"]["ci95"]
    assert lo < 5.0 < hi
    with pytest.raises(ValueError, match="at least 2"):
        target_runs(high[:1], 5.0)
    out = tmp_path / "t.json"
    assert main(["--target", str(tmp_path / "h*.json"), "5", "--json", str(out)]) == 0
    assert _json.loads(out.read_text())["verdict"] == "reached"
    assert main(["--target", str(tmp_path / "none*.json"), "5"]) == 2
    # a stricter level (several looks at one claim) widens the deciding interval
    strict = target_runs(high, 5.0, level=0.9833)
    assert strict["verdict"] == "inconclusive" and strict["level"] == 0.9833
    assert strict["final"]["ci"][0] < 5.0 <= strict["final"]["ci95"][0]
    assert res["final"]["ci"] == res["final"]["ci95"]  # the default level is 95%
    assert main(["--target", str(tmp_path / "h*.json"), "5", "--level", "1.5"]) == 2
