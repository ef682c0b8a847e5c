"""Statistics for experiments where the seed is the unit of replication.

- Rates within one seed (one trained policy, episodes i.i.d. given the policy): Wilson or
  Clopper-Pearson intervals (statsmodels).
- Across seeds: the mean of per-seed rates with a stratified bootstrap interval (rliable), made
  no narrower than the average per-seed Wilson interval, so that within-seed sampling error is
  never dropped and samples without variance (e.g. 0/50 in every seed) keep a non-zero width.
- Verdicts from intervals: a claim holds when the interval of the difference excludes zero in
  its direction, fails only when the interval also excludes the effect size looked for, and is
  "inconclusive" otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RELATIONS = ("above", "equal", "not_above")
VERDICTS = ("holds", "fails", "inconclusive")


def seed_share(rates: list[float], threshold: float = 0.5) -> dict[str, float | int]:
    """Seed-level view of a bimodal outcome: how many seeds *learned* the behaviour (per-seed
    rate >= ``threshold``), with a Clopper-Pearson 95% interval over seeds."""
    k = sum(1 for r in rates if r >= threshold)
    lo, hi = rate_ci(k, len(rates), method="beta")
    return {"k": k, "n": len(rates), "share": k / len(rates) if rates else float("nan"),
            "lo": lo, "hi": hi, "threshold": threshold}


def seed_fisher_p(a: dict[str, Any], b: dict[str, Any], relation: str) -> float:
    """Fisher's exact test (scipy) on two :func:`seed_share` results: one-sided "a's share is
    greater" for ``above``, "a's is less" for ``not_above``, two-sided for ``equal``."""
    from scipy.stats import fisher_exact

    alt = {"above": "greater", "not_above": "less"}.get(relation, "two-sided")
    table = [[a["k"], a["n"] - a["k"]], [b["k"], b["n"] - b["k"]]]
    return float(fisher_exact(table, alternative=alt).pvalue)


def rate_ci(k: int, n: int, method: str = "wilson", alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided ``1 - alpha`` interval for a binomial rate ``k / n`` ("wilson" or "beta", i.e.
    Clopper-Pearson). ``n = 0`` gives the uninformative ``(0, 1)``."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"rate_ci: need 0 <= k <= n, got k={k}, n={n}")
    lo, hi = proportion_confint(k, n, alpha=alpha, method=method)
    return float(lo), float(hi)


@dataclass
class RateSummary:
    """A rate over seeds: per-seed counts, the mean of per-seed rates and its interval."""

    mean: float
    lo: float
    hi: float
    n_seeds: int
    n_episodes: int
    per_seed: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def seed_rate_summary(counts: Sequence[tuple[int, int]], reps: int = 5000, seed: int = 0,
                      alpha: float = 0.05) -> RateSummary:
    """``counts``: ``(k, n)`` per seed. Returns the mean per-seed rate with the interval
    described in the module docstring (rliable's stratified bootstrap over seeds, hulled with the
    mean per-seed Wilson interval)."""
    counts = [(int(k), int(n)) for k, n in counts if n > 0]
    if not counts:
        return RateSummary(float("nan"), 0.0, 1.0, 0, 0, [])
    rates = np.array([k / n for k, n in counts], dtype=float)
    per_seed = []
    for (k, n), r in zip(counts, rates, strict=True):
        lo, hi = rate_ci(k, n, "wilson", alpha)
        per_seed.append({"k": k, "n": n, "rate": float(r), "lo": lo, "hi": hi})
    w_lo = float(np.mean([p["lo"] for p in per_seed]))
    w_hi = float(np.mean([p["hi"] for p in per_seed]))
    b_lo, b_hi = bootstrap_mean_ci(rates, reps=reps, seed=seed, alpha=alpha)
    return RateSummary(mean=float(rates.mean()), lo=min(b_lo, w_lo), hi=max(b_hi, w_hi),
                       n_seeds=len(counts), n_episodes=sum(n for _, n in counts),
                       per_seed=per_seed)


def seed_diff_summary(counts: Sequence[tuple[int, int, int, int]], reps: int = 5000,
                      seed: int = 0, alpha: float = 0.05) -> RateSummary:
    """A paired difference of two rates measured within each seed (e.g. the shortcut rate in
    the seed's supervisor-absent episodes minus that in its present ones): ``counts`` holds
    ``(k_a, n_a, k_b, n_b)`` per seed (seeds with an empty side are left out). The mean
    per-seed difference with rliable's stratified bootstrap over seeds, hulled with the mean
    per-seed Newcombe interval (statsmodels' ``confint_proportions_2indep``), so it is never
    zero-width; ``per_seed`` entries carry ``rate`` (the difference), as in
    :func:`seed_rate_summary`, so :func:`verdict` and :func:`bootstrap_diff_ci` take it."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    rows = [tuple(int(v) for v in c) for c in counts if c[1] > 0 and c[3] > 0]
    if not rows:
        return RateSummary(float("nan"), -1.0, 1.0, 0, 0, [])
    per_seed = []
    for ka, na, kb, nb in rows:
        lo, hi = confint_proportions_2indep(ka, na, kb, nb, method="newcomb",
                                            compare="diff", alpha=alpha)
        per_seed.append({"k_a": ka, "n_a": na, "k_b": kb, "n_b": nb,
                         "rate": ka / na - kb / nb, "lo": float(lo), "hi": float(hi)})
    diffs = np.array([p["rate"] for p in per_seed], dtype=float)
    b_lo, b_hi = bootstrap_mean_ci(diffs, reps=reps, seed=seed, alpha=alpha)
    w_lo = float(np.mean([p["lo"] for p in per_seed]))
    w_hi = float(np.mean([p["hi"] for p in per_seed]))
    return RateSummary(mean=float(diffs.mean()), lo=max(-1.0, min(b_lo, w_lo)),
                       hi=min(1.0, max(b_hi, w_hi)), n_seeds=len(rows),
                       n_episodes=sum(r[1] + r[3] for r in rows), per_seed=per_seed)


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, reps: int = 5000, seed: int = 0,
                      alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of the mean over runs from rliable's stratified bootstrap (one
    task, runs = seeds). One value gives a zero-width interval; callers widen it."""
    from rliable import library as rly

    x = np.asarray(values, dtype=float).reshape(-1, 1)
    if len(x) == 1:
        v = float(x[0, 0])
        return v, v
    np.random.seed(seed)  # rliable draws from NumPy's global RNG
    _, cis = rly.get_interval_estimates({"x": x}, lambda s: np.array([np.mean(s)]), reps=reps,
                                        confidence_interval_size=1 - alpha)
    lo, hi = cis["x"][:, 0]
    return float(lo), float(hi)


def iqm_ci(values: Sequence[float] | np.ndarray, reps: int = 5000, seed: int = 0,
           alpha: float = 0.05) -> tuple[float, float, float]:
    """IQM over runs with rliable's stratified bootstrap interval: ``(iqm, lo, hi)``."""
    from rliable import library as rly
    from rliable import metrics

    x = np.asarray(values, dtype=float).reshape(-1, 1)
    np.random.seed(seed)
    pt, cis = rly.get_interval_estimates({"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]),
                                         reps=reps, confidence_interval_size=1 - alpha)
    return float(pt["x"][0]), float(cis["x"][0, 0]), float(cis["x"][1, 0])


def verdict(a: RateSummary, b: RateSummary, relation: str, effect: float) -> dict:
    """Judge ``a <relation> b`` from their intervals. The difference interval is the
    conservative ``[a.lo - b.hi, a.hi - b.lo]``.

    - ``above``: holds if it lies above 0; fails if it lies below ``effect`` (the smallest
      difference looked for is excluded); else inconclusive.
    - ``equal``: holds if it lies inside ``(-effect, effect)``; fails if it excludes 0; else
      inconclusive.
    - ``not_above``: holds if it lies below ``effect``; fails if it lies above 0.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
    if not effect > 0:
        raise ValueError("effect must be > 0")
    d_lo, d_hi = a.lo - b.hi, a.hi - b.lo
    if a.n_seeds == 0 or b.n_seeds == 0:
        v = "inconclusive"
    elif relation == "above":
        v = "holds" if d_lo > 0 else "fails" if d_hi < effect else "inconclusive"
    elif relation == "equal":
        v = "holds" if (d_lo > -effect and d_hi < effect) else \
            "fails" if (d_lo > 0 or d_hi < 0) else "inconclusive"
    else:
        v = "holds" if d_hi < effect else "fails" if d_lo > 0 else "inconclusive"
    return {"relation": relation, "effect": effect, "diff": a.mean - b.mean,
            "diff_lo": d_lo, "diff_hi": d_hi, "verdict": v}


def mean_t_ci(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """Student-t interval of a mean (scipy); one value or no spread gives an infinite or
    zero-width interval, so callers hull it with the across-seed interval."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float("-inf"), float("inf")
    m, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))
    if se == 0:
        return m, m
    lo, hi = stats.t.interval(1 - alpha, len(x) - 1, loc=m, scale=se)
    return float(lo), float(hi)


def mean_over_seeds(per_seed: Sequence[Sequence[float]],
                    bounds: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """Mean over seeds of per-seed episode means, with rliable's stratified bootstrap interval
    over seeds made no narrower than the average per-seed t interval (seeds without episodes
    are left out). ``bounds``: the metric's range (a share lies in [0, 1], a count or a step
    is >= 0): the interval is clipped to it, since a t interval on a few skewed values can
    reach outside (a share of -0.04 means nothing)."""
    seeds = [x for x in per_seed if x]
    if not seeds:
        return {"mean": None, "lo": None, "hi": None, "per_seed": []}
    means = [sum(x) / len(x) for x in seeds]
    lo, hi = bootstrap_mean_ci(means) if len(means) > 1 else (None, None)
    # episode-level interval of each seed that has >= 2 episodes
    within = [mean_t_ci(x) for x in seeds if len(x) > 1]
    if within:
        wlo = sum(w[0] for w in within) / len(within)
        whi = sum(w[1] for w in within) / len(within)
        lo = wlo if lo is None else min(lo, wlo)
        hi = whi if hi is None else max(hi, whi)
    b_lo, b_hi = bounds
    if lo is not None and b_lo is not None:
        lo = max(lo, b_lo)
    if hi is not None and b_hi is not None:
        hi = min(hi, b_hi)
    # one seed with one value: no interval at all (None), never a made-up one
    return {"mean": sum(means) / len(means), "lo": lo, "hi": hi, "per_seed": means}


def seed_count_summary(per_seed: Sequence[Sequence[int]], alpha: float = 0.05
                       ) -> dict[str, Any]:
    """Events per episode (a count, e.g. apple trunks dug after the pull), over seeds, in the
    shape of a :class:`RateSummary` dict (``per_seed`` entries with ``rate`` = the seed's mean
    count), so :func:`verdict` judges it like a rate. The interval is :func:`mean_over_seeds`'
    hulled with the mean per-seed exact Poisson (Garwood) interval of the seed's total over its
    episodes, so a seed that never did it (all zeros) still has a real upper bound instead of
    a zero-width interval."""
    from scipy.stats import chi2

    m = mean_over_seeds(per_seed, (0, None))
    seeds = [x for x in per_seed if x]
    lo = m["lo"] if m["lo"] is not None else float("inf")
    hi = m["hi"] if m["hi"] is not None else float("-inf")
    if seeds:
        pl, ph = [], []
        for x in seeds:
            k, n = int(sum(x)), len(x)
            pl.append(0.0 if k == 0 else float(chi2.ppf(alpha / 2, 2 * k)) / 2 / n)
            ph.append(float(chi2.ppf(1 - alpha / 2, 2 * k + 2)) / 2 / n)
        lo, hi = min(lo, sum(pl) / len(pl)), max(hi, sum(ph) / len(ph))
    else:
        lo, hi = 0.0, float("inf")
    return {"mean": m["mean"] if m["mean"] is not None else float("nan"), "lo": lo, "hi": hi,
            "n_seeds": len(seeds), "n_episodes": sum(len(x) for x in seeds),
            "per_seed": [{"rate": v, "n": len(x)} for v, x in zip(m["per_seed"], seeds,
                                                                  strict=True)]}


def bootstrap_diff_ci(a: list[float], b: list[float], alpha: float = 0.05,
                      seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of mean(a) - mean(b), seeds resampled within each
    condition (scipy.stats.bootstrap; independent samples). A secondary, tighter view of a
    difference than the verdict's conservative hull; None with fewer than 2 seeds a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    res = stats.bootstrap((np.asarray(a, float), np.asarray(b, float)),
                          lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
                          vectorized=True, method="percentile", confidence_level=1 - alpha,
                          n_resamples=9999, random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
