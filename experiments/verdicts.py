"""Statistics and verdicts of the seed claims (``claims.py``): summaries with 95% CIs, Welch
differences, and :func:`decide`, which turns a claim's ``criteria`` and samples into a verdict.
"""

from __future__ import annotations

import math
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive at this budget"
NOT_RUN = "not run"


def _t95(df: float) -> float:
    from mtsandbox.agents.evaluate import t_critical_95

    return t_critical_95(max(df, 1.0))


def summary_of(x: Any) -> dict[str, float | int | None]:
    """mean / std / n / ci95 of a list of samples, or a summary dict (mean, std, n) as is.
    ``"zero"`` (or a number) is a constant with no uncertainty."""
    from mtsandbox.agents.evaluate import mean_ci95

    if isinstance(x, str) and x == "zero":
        return {"mean": 0.0, "std": 0.0, "n": math.inf, "ci95": 0.0, "const": True}
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return {"mean": float(x), "std": 0.0, "n": math.inf, "ci95": 0.0, "const": True}
    if isinstance(x, dict):
        n = x.get("n") or 0
        std = x.get("std")
        ci = x.get("ci95")
        if ci is None and std is not None and n and n > 1:
            ci = _t95(n - 1) * std / math.sqrt(n)
        return {"mean": x.get("mean"), "std": std, "n": n, "ci95": ci}
    vals = [float(v) for v in (x or []) if v is not None and math.isfinite(float(v))]
    return mean_ci95(vals)


def welch_diff(a: Any, b: Any) -> dict[str, Any]:
    """95% CI of mean(a) - mean(b) (Welch); a/b as in :func:`summary_of`."""
    sa, sb = summary_of(a), summary_of(b)
    na, nb = sa["n"] or 0, sb["n"] or 0
    out: dict[str, Any] = {"a_mean": sa["mean"], "b_mean": sb["mean"], "n_a": na,
                           "n_b": nb if math.isfinite(nb) else "const"}
    if sa["mean"] is None or sb["mean"] is None:
        return {**out, "diff": None, "lo": None, "hi": None, "ci95": None}
    diff = float(sa["mean"]) - float(sb["mean"])
    sa_std, sb_std = sa.get("std"), sb.get("std")
    va = (sa_std ** 2 / na) if (sa_std is not None and na > 1) else None
    vb = 0.0 if sb.get("const") else (
        (sb_std ** 2 / nb) if (sb_std is not None and nb > 1) else None)
    if va is None or vb is None:
        return {**out, "diff": diff, "lo": None, "hi": None, "ci95": None}
    se = math.sqrt(va + vb)
    if se == 0:
        # Samples without variance (e.g. 0/4 vs 0/4) carry no interval; a zero-width one would
        # let decide() declare "not reproduced" from nothing.
        return {**out, "diff": diff, "lo": None, "hi": None, "ci95": None}
    den = (va ** 2 / (na - 1)) + ((vb ** 2 / (nb - 1)) if vb > 0 else 0.0)
    df = (va + vb) ** 2 / den if den > 0 else max(na - 1, 1)
    ci = _t95(df) * se
    return {**out, "diff": diff, "lo": diff - ci, "hi": diff + ci, "ci95": ci}


def _n(x: Any) -> float:
    s = summary_of(x)
    return s["n"] or 0


def decide(criteria: dict[str, Any], samples: dict[str, Any],
           flags: dict[str, Any] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Verdict from a claim's ``criteria`` (see claims.yaml) and its ``samples``.

    Returns ``(verdict, details)``; ``details`` lists each criterion with its numbers and why.
    """
    flags = flags or {}
    if "all_of" in criteria:
        results = [decide(c, samples, flags) for c in criteria["all_of"]]
        verdicts = [v for v, _ in results]
        details = [d for _, ds in results for d in ds]
        if any(v == NOT_REPRODUCED for v in verdicts):
            return NOT_REPRODUCED, details
        if all(v == REPRODUCED for v in verdicts):
            return REPRODUCED, details
        return INCONCLUSIVE, details
    req = criteria.get("requires")
    if req and not flags.get(req, False):
        return INCONCLUSIVE, [{"criterion": f"requires {req}", "verdict": INCONCLUSIVE,
                               "why": f"{req} is false: the comparison cannot test the claim"}]
    kind = criteria.get("kind", "diff")
    metric = criteria["metric"]
    a = samples.get(metric)
    min_n = criteria.get("min_n", 3)
    if kind == "level":
        thr = float(criteria["threshold"])
        s = summary_of(a)
        d = {"criterion": f"{metric} vs threshold {thr}", "mean": s["mean"], "ci95": s["ci95"],
             "n": s["n"], "threshold": thr}
        if s["mean"] is None or (s["n"] or 0) < min_n:
            return INCONCLUSIVE, [{**d, "verdict": INCONCLUSIVE,
                                   "why": f"n = {s['n'] or 0} < min_n = {min_n}"}]
        ci = s["ci95"] if s["ci95"] is not None else (0.0 if min_n <= 1 else None)
        if ci is None:
            return INCONCLUSIVE, [{**d, "verdict": INCONCLUSIVE, "why": "no CI (n < 2)"}]
        lo, hi = s["mean"] - ci, s["mean"] + ci
        if lo > thr:
            return REPRODUCED, [{**d, "verdict": REPRODUCED, "why": f"CI low {lo:.3g} > {thr}"}]
        if hi < thr:
            return NOT_REPRODUCED, [{**d, "verdict": NOT_REPRODUCED,
                                     "why": f"CI high {hi:.3g} < {thr}"}]
        return INCONCLUSIVE, [{**d, "verdict": INCONCLUSIVE,
                               "why": f"CI [{lo:.3g}, {hi:.3g}] contains {thr}"}]
    base_key = criteria.get("baseline", "zero")
    b = "zero" if base_key == "zero" else samples.get(base_key)
    direction = criteria.get("direction", "greater")
    margin = float(criteria.get("margin", 0.0))
    w = welch_diff(a, b)
    d = {"criterion": f"{metric} - {base_key} ({direction}, margin {margin})", **w}
    n_b = _n(b)
    if w["diff"] is None or _n(a) < min_n or n_b < min_n:
        return INCONCLUSIVE, [{**d, "verdict": INCONCLUSIVE,
                               "why": f"too few samples (n = {_n(a)}, {n_b}; min_n = {min_n})"}]
    if w["lo"] is None:
        return INCONCLUSIVE, [{**d, "verdict": INCONCLUSIVE, "why": "no CI"}]
    sign = 1.0 if direction == "greater" else -1.0
    lo, hi = (w["lo"], w["hi"]) if sign > 0 else (-w["hi"], -w["lo"])  # claimed direction > 0
    if lo > margin:
        return REPRODUCED, [{**d, "verdict": REPRODUCED,
                             "why": f"CI of the difference [{w['lo']:.3g}, {w['hi']:.3g}] "
                                    f"excludes the margin in the claimed direction"}]
    if hi < 0 or (margin > 0 and lo >= -margin and hi <= margin):
        why = ("CI lies in the opposite direction" if hi < 0
               else f"CI lies within +-{margin} (no effect worth the name)")
        return NOT_REPRODUCED, [{**d, "verdict": NOT_REPRODUCED,
                                 "why": f"{why}: [{w['lo']:.3g}, {w['hi']:.3g}]"}]
    return INCONCLUSIVE, [{**d, "verdict": INCONCLUSIVE,
                           "why": f"CI [{w['lo']:.3g}, {w['hi']:.3g}] too wide to decide"}]
