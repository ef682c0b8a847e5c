"""Linear probes (torch, no sklearn): logistic regression for binary concepts, ridge regression
for continuous ones, per layer x concept, with a held-out split and a shuffled-label control.

    from mtsandbox.interp.probes import probe_dataset, fit_probe
    results = probe_dataset(ds)                 # every layer x every usable concept
    r = fit_probe(X, y)                          # one probe; r.test_score, r.control_score

Split: rows are cut into contiguous chunks (default 16 steps) and whole chunks go to train or
test, so temporally adjacent (near-duplicate) frames do not straddle the split. Features are
standardised with training statistics. The L2 strength is chosen on an inner validation split
of the training chunks. Binary probes report accuracy (also balanced accuracy and the
majority-class baseline; the shuffled-label control's own chance level can differ from the
true labels' majority baseline when classes are split unevenly, so compare balanced accuracies,
chance 0.5); regression probes report R^2 (baseline 0).

Control: the same pipeline fit on labels shuffled (a permutation of whole rows) -- a probe that
"finds" a concept only as well as it finds shuffled labels has found nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class ProbeResult:
    layer: str
    concept: str
    kind: str  # "logistic" | "ridge"
    metric: str  # "accuracy" | "r2"
    train_score: float
    test_score: float
    control_score: float
    baseline: float
    """Majority-class accuracy (binary) or 0 (R^2)."""
    balanced_accuracy: float | None
    """Held-out balanced accuracy (binary only; chance = 0.5 whatever the class balance)."""
    control_balanced_accuracy: float | None
    l2: float
    n_train: int
    n_test: int
    n_features: int

    @property
    def above_control(self) -> float:
        """Held-out score minus the control's (balanced accuracy for binary probes)."""
        if self.kind == "logistic" and self.balanced_accuracy is not None \
                and self.control_balanced_accuracy is not None:
            return self.balanced_accuracy - self.control_balanced_accuracy
        return self.test_score - self.control_score

    def to_dict(self) -> dict:
        return asdict(self)


def is_binary(y: np.ndarray) -> bool:
    u = np.unique(y[~np.isnan(y)])
    return len(u) <= 2 and set(u.tolist()) <= {0.0, 1.0}


def chunk_split(n: int, test_frac: float = 0.3, chunk: int = 16, seed: int = 0,
                groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train/test masks; contiguous chunks (within ``groups``) go to one side."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) // max(chunk, 1)
    if groups is not None:  # never let a chunk span two episodes
        ids = ids + (np.asarray(groups) * (n + 1))
    uniq = np.unique(ids)
    rng.shuffle(uniq)
    n_test = max(1, round(len(uniq) * test_frac)) if len(uniq) > 1 else 0
    test_ids = set(uniq[:n_test].tolist())
    test = np.array([i in test_ids for i in ids], dtype=bool)
    return ~test, test


def _standardise(Xtr: torch.Tensor, *others: torch.Tensor):
    mu = Xtr.mean(0, keepdim=True)
    sd = Xtr.std(0, keepdim=True).clamp_min(1e-6)
    return [(Xtr - mu) / sd, *[(o - mu) / sd for o in others]]


def _fit_ridge(X: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge with intercept; dual form when features outnumber samples. Returns (w, b)."""
    n, d = X.shape
    ym = y.mean()
    yc = y - ym
    lam = l2 * max(n, 1)
    if d > n:
        K = X @ X.T
        alpha = torch.linalg.solve(K + lam * torch.eye(n, dtype=X.dtype), yc)
        w = X.T @ alpha
    else:
        w = torch.linalg.solve(X.T @ X + lam * torch.eye(d, dtype=X.dtype), X.T @ yc)
    return w, ym


def _fit_logistic(X: torch.Tensor, y: torch.Tensor, l2: float, iters: int = 60
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    d = X.shape[1]
    w = torch.zeros(d, dtype=X.dtype, requires_grad=True)
    b = torch.zeros((), dtype=X.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y)
        loss = loss + 0.5 * l2 * (w * w).sum() / 1.0
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _score(kind: str, X: torch.Tensor, y: torch.Tensor, w, b) -> float:
    pred = X @ w + b
    if kind == "logistic":
        return float(((pred > 0).to(y.dtype) == y).to(torch.float64).mean())
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan


def _balanced(X: torch.Tensor, y: torch.Tensor, w, b) -> float:
    pred = (X @ w + b > 0).to(y.dtype)
    accs = [float((pred[y == c] == c).to(torch.float64).mean()) for c in (0.0, 1.0)
            if bool((y == c).any())]
    return float(np.mean(accs)) if accs else math.nan


def _fit_select(kind: str, Xtr, ytr, l2_grid, seed) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Pick l2 on an inner split of the training rows, then refit on all of them."""
    fit = _fit_logistic if kind == "logistic" else _fit_ridge
    if len(l2_grid) > 1 and len(ytr) >= 20:
        itr, iva = chunk_split(len(ytr), 0.25, chunk=8, seed=seed + 1)
        ok = iva.any() and itr.any() and (kind != "logistic" or len(torch.unique(ytr[itr])) > 1)
        if ok:
            best, best_l2 = -math.inf, l2_grid[0]
            for l2 in l2_grid:
                w, b = fit(Xtr[itr], ytr[itr], l2)
                s = _score(kind, Xtr[iva], ytr[iva], w, b)
                s = -math.inf if math.isnan(s) else s
                if s > best:
                    best, best_l2 = s, l2
            w, b = fit(Xtr, ytr, best_l2)
            return best_l2, w, b
    l2 = l2_grid[len(l2_grid) // 2]
    w, b = fit(Xtr, ytr, l2)
    return l2, w, b


def _one(kind, X, y, train, test, l2_grid, seed):
    Xt = torch.as_tensor(X, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    Xtr, Xte = _standardise(Xt[train], Xt[test])
    ytr, yte = yt[train], yt[test]
    l2, w, b = _fit_select(kind, Xtr, ytr, l2_grid, seed)
    return (l2, _score(kind, Xtr, ytr, w, b), _score(kind, Xte, yte, w, b),
            _balanced(Xte, yte, w, b) if kind == "logistic" else None)


def fit_probe(X: np.ndarray, y: np.ndarray, *, layer: str = "", concept: str = "",
              kind: str | None = None, test_frac: float = 0.3, chunk: int = 16, seed: int = 0,
              groups: np.ndarray | None = None, l2_grid: Sequence[float] = L2_GRID
              ) -> ProbeResult | None:
    """Fit one probe of ``y`` from ``X`` (``(N, ...)``, flattened). Rows with NaN labels are
    dropped. ``None`` when there is too little data (fewer than 8 rows, a single class, or an
    empty side of the split)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.float64)
    ok = ~np.isnan(y)
    X, y = X[ok], y[ok]
    if groups is not None:
        groups = np.asarray(groups)[ok]
    if len(y) < 8 or len(np.unique(y)) < 2:
        return None
    kind = kind or ("logistic" if is_binary(y) else "ridge")
    train, test = chunk_split(len(y), test_frac, chunk, seed, groups)
    if train.sum() < 4 or test.sum() < 2 or len(np.unique(y[train])) < 2:
        return None
    l2, tr_s, te_s, bal = _one(kind, X, y, train, test, l2_grid, seed)
    rng = np.random.default_rng(seed + 12345)
    y_shuf = y[rng.permutation(len(y))]
    ctrl_bal: float | None = math.nan if kind == "logistic" else None
    if len(np.unique(y_shuf[train])) < 2:
        ctrl = math.nan
    else:
        _, _, ctrl, ctrl_bal = _one(kind, X, y_shuf, train, test, l2_grid, seed)
    if kind == "logistic":
        p1 = float(y[train].mean())
        major = 1.0 if p1 >= 0.5 else 0.0
        baseline = float((y[test] == major).mean())
    else:
        baseline = 0.0
    return ProbeResult(layer=layer, concept=concept, kind=kind,
                       metric="accuracy" if kind == "logistic" else "r2",
                       train_score=tr_s, test_score=te_s, control_score=ctrl, baseline=baseline,
                       balanced_accuracy=bal, control_balanced_accuracy=ctrl_bal,
                       l2=float(l2), n_train=int(train.sum()),
                       n_test=int(test.sum()), n_features=int(X.shape[1]))


def probe_dataset(ds, layers: Sequence[str] | None = None, concepts: Sequence[str] | None = None,
                  seed: int = 0, chunk: int = 16, max_features: int = 8192,
                  l2_grid: Sequence[float] = L2_GRID) -> list[ProbeResult]:
    """Probe every ``layer x concept`` of an :class:`~mtsandbox.interp.data.ActivationDataset`
    (default: the extractor layers and every concept with two or more values). Layers wider
    than ``max_features`` are average-pooled spatially until they fit."""
    from mtsandbox.interp.hooks import EXTRACTOR_HOOKS

    layers = list(layers) if layers is not None else [k for k in EXTRACTOR_HOOKS if k in ds.acts]
    concepts = list(concepts) if concepts is not None else ds.concepts()
    out = []
    for layer in layers:
        X = features_for_probe(ds.acts[layer], max_features)
        for c in concepts:
            r = fit_probe(X, ds.labels[c], layer=layer, concept=c, seed=seed, chunk=chunk,
                          groups=ds.episode, l2_grid=l2_grid)
            if r is not None:
                out.append(r)
    return out


def features_for_probe(A: np.ndarray, max_features: int = 8192) -> np.ndarray:
    A = np.asarray(A, dtype=np.float32)
    t = torch.as_tensor(A)
    while t.dim() == 4 and t[0].numel() > max_features and t.shape[-1] >= 2:
        t = torch.nn.functional.avg_pool2d(t, 2, ceil_mode=True)
    return t.reshape(len(A), -1).numpy()


def results_table(results: Sequence[ProbeResult]) -> list[dict]:
    return [r.to_dict() for r in results]
