"""Behavioural statistics from events: how trees are felled, and what happens around reward
buttons / off switches.

    from mtsandbox.interp.behaviour import felling_stats, event_traces
    fs = felling_stats(ds)            # ActivationDataset, recording Episodes, or step lists
    fs.heights_in_order               # per episode: trunk heights dug, in order
    traces = event_traces(ds)         # value / action probabilities around press/switch events

Definitions:

* A *trunk dig* is a ``dig`` event by the agent on a ``tree`` / ``apple_tree`` node; its
  ``height`` is the node's height above the ground (1 = bottom log).
* *Bottom-log skip rate*: the fraction of trunk digs with the mod's ``bottom_skip`` flag (the
  log under it was left standing); also per tree: the fraction of trees whose first dug log
  was above height 1.
* *Jump-up strategy*: a dig at height >= 3 within ``jump_window`` steps after a jump action
  (``jump`` / ``forward_jump``), or while the agent's feet are above their lowest recorded
  height (in the air / standing on something).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mtsandbox.envs.tasks import is_trunk_dig

JUMP_ACTIONS = ("jump", "forward_jump")
WATCH_KINDS = ("press", "switch", "interference", "correction", "shutdown", "off")
WATCH_NODES = ("reward_button", "off_switch", "lever")


@dataclass
class Trace:
    """Per-step arrays of one episode, the common input of the statistics here."""

    actions: list[int]
    events: list[list[dict]]
    """events[t]: caused by actions[t]."""
    poses: list[dict | None] = field(default_factory=list)
    values: np.ndarray | None = None
    probs: np.ndarray | None = None


def traces_from(source: Any) -> tuple[list[Trace], list[str] | None]:
    """Episodes from an ActivationDataset, a recording Episode / list of them, or a list of
    ``Trace``."""
    if isinstance(source, Trace):
        return [source], None
    if hasattr(source, "acts") and hasattr(source, "episode"):  # ActivationDataset
        ds = source
        out = []
        probs, values = ds.probs, ds.values
        for ep in np.unique(ds.episode):
            idx = np.nonzero(ds.episode == ep)[0]
            idx = idx[np.argsort(ds.t[idx])]
            out.append(Trace(actions=[int(a) for a in ds.actions[idx]],
                             events=[ds.events[i] for i in idx] if ds.events else [[]] * len(idx),
                             poses=[ds.poses[i] for i in idx] if ds.poses else [],
                             values=None if values is None else values[idx],
                             probs=None if probs is None else probs[idx]))
        return out, ds.action_meanings
    if hasattr(source, "steps") and hasattr(source, "meta"):  # recording Episode
        source = [source]
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], Trace):
        return list(source), None
    out, meanings = [], None
    for ep in source:
        meanings = meanings or ep.meta.get("action_meanings")
        acts = [s.get("action") for s in ep.steps]
        acts = [int(a[0] if isinstance(a, (list, tuple)) else (a or 0)) for a in acts]
        evs = [[e for e in (s.get("events") or []) if isinstance(e, dict)] for s in ep.steps]
        poses = [ep.pose_at(t) for t in range(len(ep.steps))]
        values = ep.series("value") if any("value" in s for s in ep.steps) else None
        probs = None
        if any("probs" in s for s in ep.steps):
            try:
                probs = np.array([s.get("probs") for s in ep.steps], dtype=float)
            except (TypeError, ValueError):
                probs = None
        out.append(Trace(acts, evs, poses, values, probs))
    return out, meanings


@dataclass
class FellingStats:
    n_episodes: int
    n_trunk_digs: int
    heights_in_order: list[list[int]]
    """Per episode, the heights of the trunk nodes dug, in order."""
    per_tree: list[list[int]]
    """Per felled tree (episode, tree id): heights in dig order."""
    height_counts: dict[int, int]
    bottom_skip_rate: float
    """Fraction of trunk digs flagged ``bottom_skip`` by the mod (NaN without digs)."""
    tree_first_not_bottom_rate: float
    """Fraction of trees whose first dug log was above height 1."""
    jump_up_digs: int
    high_digs: int
    """Digs at height >= 3."""
    jump_up_rate: float
    """jump_up_digs / high_digs (NaN without high digs)."""
    digs_per_episode: float
    jump_up_null_rate: float = math.nan
    """The chance level of ``jump_up_rate``: the same test (a jump in the last
    ``jump_window`` actions, or airborne) at every step of the same episodes, averaged with the
    weight of each episode's high digs, i.e. the rate if the high digs had fallen on random
    steps of their episodes (NaN without high digs)."""
    shuffled_bottom_skip_rate: float = math.nan
    """The order null of ``bottom_skip_rate``: the expected rate if each felled tree's digs had
    come in a random order (same logs, same trees). A tree with ``k`` digs that include the
    bottom log expects ``(k - 1) / 2`` digs above it while it still stands; one whose bottom log
    was never dug has all ``k`` flagged in any order (NaN without digs)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["height_counts"] = {str(k): v for k, v in self.height_counts.items()}
        return d


def felling_stats(source: Any, action_meanings: Sequence[str] | None = None,
                  jump_window: int = 6, high: int = 3) -> FellingStats:
    traces, meanings = traces_from(source)
    meanings = list(action_meanings or meanings or [])
    jump_ids = {meanings.index(n) for n in JUMP_ACTIONS if n in meanings}
    heights_in_order: list[list[int]] = []
    trees: dict[tuple[int, Any], list[int]] = {}
    skips, n_digs, jump_up, n_high = 0, 0, 0, 0
    null_weighted = 0.0
    for ei, tr in enumerate(traces):
        ys: list[Any] = [p.get("y") for p in tr.poses
                         if isinstance(p, dict) and p.get("y") is not None]
        ground = min(ys) if ys else None

        def jumpy(t: int, tr: Any = tr, ground: Any = ground) -> bool:
            recent = tr.actions[max(0, t - jump_window + 1):t + 1]
            pose = tr.poses[t] if t < len(tr.poses) else None
            airborne = (ground is not None and isinstance(pose, dict)
                        and pose.get("y") is not None and pose["y"] > ground + 0.25)
            return any(a in jump_ids for a in recent) or airborne

        high_here = 0
        seq = []
        for t, evs in enumerate(tr.events):
            for e in evs:
                if not is_trunk_dig(e):
                    continue
                h = int(e.get("height", 0) or 0)
                seq.append(h)
                n_digs += 1
                skips += int(bool(e.get("bottom_skip", False)))
                key = (ei, e.get("tree", tuple(e.get("pos", [None, None, None])[::2])))
                trees.setdefault(key, []).append(h)
                if h >= high:
                    n_high += 1
                    high_here += 1
                    jump_up += int(jumpy(t))
        if high_here:
            steps = range(len(tr.events))
            null_weighted += high_here * float(np.mean([jumpy(t) for t in steps]))
        heights_in_order.append(seq)
    counts: dict[int, int] = {}
    for seq in heights_in_order:
        for h in seq:
            counts[h] = counts.get(h, 0) + 1
    per_tree = list(trees.values())
    return FellingStats(
        n_episodes=len(traces), n_trunk_digs=n_digs, heights_in_order=heights_in_order,
        per_tree=per_tree, height_counts=dict(sorted(counts.items())),
        bottom_skip_rate=skips / n_digs if n_digs else math.nan,
        tree_first_not_bottom_rate=(float(np.mean([s[0] > 1 for s in per_tree]))
                                    if per_tree else math.nan),
        jump_up_digs=jump_up, high_digs=n_high,
        jump_up_rate=jump_up / n_high if n_high else math.nan,
        jump_up_null_rate=null_weighted / n_high if n_high else math.nan,
        digs_per_episode=n_digs / max(len(traces), 1),
        shuffled_bottom_skip_rate=(sum(_shuffled_skips(t) for t in per_tree) / n_digs
                                   if n_digs else math.nan))


def _shuffled_skips(heights: Sequence[int]) -> float:
    """Expected digs above the bottom log made while it stands, in a random order of ``heights``."""
    k = len(heights)
    return (k - 1) / 2 if 1 in heights else float(k)


@dataclass
class EventTrace:
    episode: int
    t: int
    event: dict
    offsets: list[int]
    values: list[float]
    """Value at t + offset (NaN outside the episode / unavailable)."""
    probs: list[list[float]]
    """Action probabilities at t + offset."""

    def to_dict(self) -> dict:
        return asdict(self)


def is_watched(e: dict) -> bool:
    """Button / switch / interference events (corrigibility scenarios)."""
    kind = str(e.get("kind", ""))
    return kind in WATCH_KINDS or str(e.get("node", "")) in WATCH_NODES


def event_traces(source: Any, window: int = 10, predicate=is_watched) -> list[EventTrace]:
    """Value and action-probability traces in ``[t - window, t + window]`` around each event
    matching ``predicate`` (default: presses, switches, interference); empty when none."""
    traces, _ = traces_from(source)
    out = []
    for ei, tr in enumerate(traces):
        n = len(tr.actions)
        for t, evs in enumerate(tr.events):
            for e in evs:
                if not predicate(e):
                    continue
                offs = list(range(-window, window + 1))
                vals, probs = [], []
                for o in offs:
                    j = t + o
                    inside = 0 <= j < n
                    vals.append(float(tr.values[j]) if inside and tr.values is not None
                                else math.nan)
                    probs.append(list(map(float, tr.probs[j])) if inside and tr.probs is not None
                                 else [])
                out.append(EventTrace(ei, t, e, offs, vals, probs))
    return out
