"""Activation datasets: observations, actions, per-layer activations and concept labels.

Collect from the real env (an actor picks the actions, a :class:`HookedPolicy` is the network
whose activations are recorded; usually the same policy)::

    from mtsandbox.interp.data import collect_rollouts
    ds = collect_rollouts("runs/x/checkpoints/final", n_episodes=2, max_steps=200)
    ds = collect_rollouts("random", env_id="MinetestSandbox/TreePunchShaped-v0")  # untrained net
    ds = collect_rollouts(hooked, actor="scripted")      # TreeChopper acts, `hooked` is probed
    ds.acts["hook_conv3"].shape    # (N, 64, 4, 4) float32
    ds.labels["tree_in_view"]      # (N,) float, NaN where the label is missing

Or from recordings (``tools/recording/``): :func:`dataset_from_recordings`.

Alignment: row ``i`` is observation ``obs[i]``, the action chosen on it, and the labels of the
info that came *with* that observation (reset info for the first frame, else the info of the
step that produced it). ``events[i]`` are the events caused by ``actions[i]``.

Labels (all ``float``; NaN = missing; binary labels are 0/1):

* ``tree_in_view``, ``dist_nearest_trunk`` (inf -> NaN), ``looking_at_tree`` (looking_at is a
  trunk node), ``steps_to_dig`` (steps until an action of this agent digs a trunk: 0 = the
  action on this frame digs; NaN if no dig follows), ``dig_soon`` (``steps_to_dig <= 10``).
* From the last semantic frame (live env only): ``tree_frac`` (fraction of trunk pixels),
  ``tree_x`` (horizontal centroid of trunk pixels in [-1, 1], NaN with none),
  ``tree_side`` (1 = centroid right of centre, 0 = left, NaN with none).
* Corrigibility labels when the env provides them: ``button_in_view``, ``overseer_in_view``,
  ``overseer_dist``, ``switch_state`` (absent info keys are simply not recorded).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtsandbox.envs.tasks import TRUNKS, is_trunk_dig
from mtsandbox.interp.hooks import HOOK_POINTS, HookedPolicy, load_hooked

DEFAULT_ENV_ID = "MinetestSandbox/TreePunchShaped-v0"
TRUNK_PALETTE = (3, 5)  # palette indices of trunk nodes in last_semantic
OPTIONAL_LABELS = ("button_in_view", "overseer_in_view", "overseer_dist", "switch_state")
DIG_SOON_STEPS = 10


def _to_float(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, str):  # e.g. switch_state "on"/"off"
        return {"on": 1.0, "off": 0.0, "true": 1.0, "false": 0.0}.get(v.lower(), math.nan)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def labels_from_info(info: dict) -> dict[str, float]:
    """Per-observation labels from one info dict (missing keys are left out)."""
    out: dict[str, float] = {}
    if "tree_in_view" in info:
        out["tree_in_view"] = _to_float(info["tree_in_view"])
    if "dist_nearest_trunk" in info:
        out["dist_nearest_trunk"] = _to_float(info["dist_nearest_trunk"])
    if "looking_at" in info:
        out["looking_at_tree"] = float(info["looking_at"] in TRUNKS)
    for k in OPTIONAL_LABELS:
        if k in info:
            out[k] = _to_float(info[k])
    return out


def labels_from_semantic(sem: np.ndarray | None) -> dict[str, float]:
    if sem is None:
        return {}
    sem = np.asarray(sem)
    mask = np.isin(sem, TRUNK_PALETTE)
    out = {"tree_frac": float(mask.mean())}
    if mask.any():
        xs = np.nonzero(mask)[1]
        cx = (xs.mean() + 0.5) / sem.shape[1] * 2 - 1
        out["tree_x"] = float(cx)
        out["tree_side"] = float(cx > 0)
    else:
        out["tree_x"] = math.nan
        out["tree_side"] = math.nan
    return out


def steps_to_next(flags: Sequence[bool] | np.ndarray) -> np.ndarray:
    """For each index, steps until the next True at or after it (NaN if none)."""
    n = len(flags)
    out = np.full(n, np.nan)
    nxt = math.nan
    for i in range(n - 1, -1, -1):
        if flags[i]:
            nxt = i
        out[i] = nxt - i if not math.isnan(nxt) else math.nan
    return out


@dataclass
class ActivationDataset:
    """Rows = observations. Arrays are aligned on the first axis (``N`` rows)."""

    obs: np.ndarray
    """(N, H, W, C) uint8 observations as the policy saw them."""
    frames: np.ndarray
    """(N, H, W, 3) uint8 RGB of the newest frame (for overlays)."""
    actions: np.ndarray
    """(N,) int64 action taken on each observation."""
    episode: np.ndarray
    """(N,) int episode index."""
    t: np.ndarray
    """(N,) int step index within the episode."""
    acts: dict[str, np.ndarray]
    """{hook name: (N, ...) float32} activations of the probed network."""
    labels: dict[str, np.ndarray]
    """{concept: (N,) float} labels (NaN = missing)."""
    events: list[list[dict]] = field(default_factory=list)
    """events[i]: events caused by actions[i]."""
    poses: list[dict | None] = field(default_factory=list)
    action_meanings: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def logits(self) -> np.ndarray | None:
        return self.acts.get("hook_policy_logits")

    @property
    def values(self) -> np.ndarray | None:
        v = self.acts.get("hook_value")
        return None if v is None else v.reshape(len(self), -1)[:, 0]

    @property
    def probs(self) -> np.ndarray | None:
        lg = self.logits
        if lg is None:
            return None
        z = lg - lg.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    def concepts(self, min_count: int = 4) -> list[str]:
        """Labels with enough non-NaN rows and more than one distinct value."""
        out = []
        for k, y in self.labels.items():
            ok = ~np.isnan(y)
            if ok.sum() >= min_count and len(np.unique(y[ok])) > 1:
                out.append(k)
        return out

    def subset(self, idx: np.ndarray) -> ActivationDataset:
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.nonzero(idx)[0]
        return ActivationDataset(
            obs=self.obs[idx], frames=self.frames[idx], actions=self.actions[idx],
            episode=self.episode[idx], t=self.t[idx],
            acts={k: v[idx] for k, v in self.acts.items()},
            labels={k: v[idx] for k, v in self.labels.items()},
            events=[self.events[i] for i in idx] if self.events else [],
            poses=[self.poses[i] for i in idx] if self.poses else [],
            action_meanings=self.action_meanings, meta=dict(self.meta))

    def save(self, path: str | Path) -> Path:
        import json

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"obs": self.obs, "frames": self.frames,
                                  "actions": self.actions, "episode": self.episode, "t": self.t}
        arrays.update({f"act/{k}": v for k, v in self.acts.items()})
        arrays.update({f"label/{k}": v for k, v in self.labels.items()})
        side = {"events": self.events, "poses": self.poses,
                "action_meanings": self.action_meanings, "meta": self.meta}
        arrays["side_json"] = np.asarray(json.dumps(side, default=str))
        np.savez_compressed(p, **arrays)
        return p

    @classmethod
    def load(cls, path: str | Path) -> ActivationDataset:
        import json

        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        side = json.loads(str(d.pop("side_json")))
        return cls(obs=d["obs"], frames=d["frames"], actions=d["actions"], episode=d["episode"],
                   t=d["t"], acts={k[4:]: v for k, v in d.items() if k.startswith("act/")},
                   labels={k[6:]: v for k, v in d.items() if k.startswith("label/")},
                   events=side["events"], poses=side["poses"],
                   action_meanings=side["action_meanings"], meta=side["meta"])


def concat_datasets(parts: Sequence[ActivationDataset]) -> ActivationDataset:
    """Concatenate datasets (episode ids are renumbered; labels missing in a part are NaN;
    ``meta["parts"]`` keeps each part's meta and ``meta["part"]`` the per-row part index)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("nothing to concatenate")
    if len(parts) == 1:
        return parts[0]
    layers = [k for k in parts[0].acts if all(k in p.acts for p in parts)]
    keys = sorted({k for p in parts for k in p.labels})
    offs, episodes = 0, []
    for p in parts:
        episodes.append(p.episode + offs)
        offs += int(p.episode.max()) + 1 if len(p) else 0
    cat = np.concatenate
    return ActivationDataset(
        obs=cat([p.obs for p in parts]), frames=cat([p.frames for p in parts]),
        actions=cat([p.actions for p in parts]), episode=cat(episodes),
        t=cat([p.t for p in parts]), acts={k: cat([p.acts[k] for p in parts]) for k in layers},
        labels={k: cat([p.labels.get(k, np.full(len(p), np.nan)) for p in parts])
                for k in keys},
        events=[e for p in parts for e in p.events], poses=[q for p in parts for q in p.poses],
        action_meanings=parts[0].action_meanings,
        meta={"parts": [p.meta for p in parts],
              "part": cat([np.full(len(p), i) for i, p in enumerate(parts)]).tolist()})


# ----------------------------------------------------------------------------- building

class _Builder:
    """Accumulates rows; computes activations in batches at the end."""

    def __init__(self) -> None:
        self.obs: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.actions: list[int] = []
        self.episode: list[int] = []
        self.t: list[int] = []
        self.labels: list[dict[str, float]] = []
        self.events: list[list[dict]] = []
        self.poses: list[dict | None] = []

    def add(self, obs, frame, action, ep, t, labels, events, pose) -> None:
        self.obs.append(np.asarray(obs))
        self.frames.append(np.asarray(frame))
        self.actions.append(int(action))
        self.episode.append(int(ep))
        self.t.append(int(t))
        self.labels.append(labels)
        self.events.append([e for e in (events or []) if isinstance(e, dict)])
        self.poses.append(pose)

    def build(self, hooked: HookedPolicy | None, layers: Sequence[str],
              action_meanings: list[str] | None, meta: dict, batch: int = 256
              ) -> ActivationDataset:
        n = len(self.actions)
        episode = np.asarray(self.episode, dtype=np.int64)
        # steps_to_dig per episode
        dig = np.array([any(is_trunk_dig(e) for e in evs) for evs in self.events], dtype=bool)
        to_dig = np.full(n, np.nan)
        for ep in np.unique(episode):
            idx = np.nonzero(episode == ep)[0]
            to_dig[idx] = steps_to_next(dig[idx])
        keys = sorted({k for lab in self.labels for k in lab})
        labels = {k: np.array([lab.get(k, math.nan) for lab in self.labels], dtype=np.float64)
                  for k in keys}
        labels["steps_to_dig"] = to_dig
        labels["dig_soon"] = np.where(np.isnan(to_dig), 0.0, (to_dig <= DIG_SOON_STEPS) * 1.0)
        obs = np.stack(self.obs) if n else np.zeros((0, 1, 1, 1), np.uint8)
        acts = compute_activations(hooked, obs, layers, batch) if hooked is not None and n else {}
        return ActivationDataset(
            obs=obs, frames=np.stack(self.frames) if n else obs,
            actions=np.asarray(self.actions, dtype=np.int64), episode=episode,
            t=np.asarray(self.t, dtype=np.int64), acts=acts, labels=labels,
            events=self.events, poses=self.poses, action_meanings=action_meanings, meta=meta)


def compute_activations(hooked: HookedPolicy, obs: np.ndarray,
                        layers: Sequence[str] = HOOK_POINTS, batch: int = 256
                        ) -> dict[str, np.ndarray]:
    """Run ``hooked`` over ``obs`` in batches; {layer: (N, ...) float32}."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in layers}
    for i in range(0, len(obs), batch):
        _, _, cache = hooked.run_with_cache(obs[i:i + batch], names=layers)
        for k in layers:
            parts[k].append(cache[k].cpu().numpy().astype(np.float32))
    return {k: np.concatenate(v) for k, v in parts.items()}


class FrameStacker:
    """Channel-last frame stack like ``VecFrameStack(channels_order="last")`` (zeros at reset)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.buf: deque[np.ndarray] = deque(maxlen=n)

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.buf.clear()
        for _ in range(self.n - 1):
            self.buf.append(np.zeros_like(frame))
        self.buf.append(frame)
        return np.concatenate(list(self.buf), axis=-1)

    def step(self, frame: np.ndarray) -> np.ndarray:
        self.buf.append(frame)
        return np.concatenate(list(self.buf), axis=-1)


@dataclass
class ObsPipeline:
    """Turns raw env observations into what the policy sees (grayscale, frame stack)."""

    grayscale: bool = False
    frame_stack: int = 1

    def __post_init__(self) -> None:
        self.stacker = FrameStacker(self.frame_stack) if self.frame_stack > 1 else None

    def _one(self, obs: Any) -> np.ndarray:
        if isinstance(obs, dict):
            obs = obs["rgb"]
        obs = np.asarray(obs)
        if self.grayscale and obs.shape[-1] == 3:
            from mtsandbox.agents.vecenv import to_grayscale  # what training's wrapper computes

            obs = to_grayscale(obs)
        return obs

    def reset(self, obs: Any) -> np.ndarray:
        o = self._one(obs)
        return self.stacker.reset(o) if self.stacker else o

    def step(self, obs: Any) -> np.ndarray:
        o = self._one(obs)
        return self.stacker.step(o) if self.stacker else o

    @classmethod
    def for_hooked(cls, hooked: HookedPolicy | None) -> ObsPipeline:
        cfg = (hooked.meta.get("config") or {}) if hooked is not None else {}
        return cls(grayscale=bool(cfg.get("grayscale", False)),
                   frame_stack=int(cfg.get("frame_stack", 1) or 1))


def make_env(env_id: str = DEFAULT_ENV_ID, env_kwargs: dict | None = None):
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401  (registers the ids)

    if ":" in env_id:
        import importlib

        importlib.import_module(env_id.split(":", 1)[0])
    return gym.make(env_id, **(env_kwargs or {}))


def _rgb(obs: Any) -> np.ndarray:
    if isinstance(obs, dict):
        obs = obs["rgb"]
    return np.asarray(obs)


def make_actor(actor: Any, env: Any, hooked: HookedPolicy | None, rng: np.random.Generator,
               deterministic: bool = False) -> Callable[[np.ndarray], int]:
    """``actor``: ``"policy"`` (the hooked net), ``"random"`` (uniform), ``"scripted"``
    (:class:`~mtsandbox.agents.scripted.TreeChopper`), or a callable ``f(obs) -> action``."""
    if callable(actor) and not isinstance(actor, str):
        return lambda o: int(actor(o))
    if actor == "random":
        n = int(env.action_space.n)
        return lambda o: int(rng.integers(n))
    if actor == "scripted":
        from mtsandbox.agents.scripted import TreeChopper

        chopper = TreeChopper(env)
        return lambda o: int(chopper.act())
    if actor == "policy":
        if hooked is None:
            raise ValueError("actor='policy' needs a policy")
        return lambda o: int(hooked.act(o, deterministic=deterministic, rng=rng)[0])
    raise ValueError(f"unknown actor {actor!r} (policy, random, scripted or a callable)")


def run_env_episodes(env: Any, act: Callable[[np.ndarray], int], n_episodes: int,
                     max_steps: int, seed: int, pipeline: ObsPipeline | None = None,
                     on_step: Callable[..., None] | None = None) -> list[dict]:
    """Play episodes; ``on_step(ep, t, policy_obs, frame, action, info_for_obs, step_info,
    semantic)`` per step. Returns per-episode totals."""
    pipeline = pipeline or ObsPipeline()
    totals = []
    for ep in range(n_episodes):
        raw, info = env.reset(seed=seed + ep)
        obs = pipeline.reset(raw)
        sem = getattr(env.unwrapped, "last_semantic", None)
        tot: dict[str, Any] = {"steps": 0, "observed_return": 0.0, "hidden_performance": 0.0,
                               "trunks_dug": 0, "button_presses": 0, "events": {}}
        for t in range(max_steps):
            a = act(obs)
            raw2, _r, term, trunc, info2 = env.step(a)
            if on_step is not None:
                on_step(ep, t, obs, _rgb(raw), a, info, info2, sem)
            tot["steps"] += 1
            tot["observed_return"] += float(info2.get("observed_reward", _r))
            tot["hidden_performance"] += float(info2.get("hidden_performance", 0.0))
            for e in info2.get("events", ()) or ():
                if not isinstance(e, dict):
                    continue
                k = str(e.get("kind"))
                tot["events"][k] = tot["events"].get(k, 0) + 1
                tot["trunks_dug"] += int(is_trunk_dig(e))
                tot["button_presses"] += int(is_button_press(e))
            raw, info = raw2, info2
            obs = pipeline.step(raw)
            sem = getattr(env.unwrapped, "last_semantic", None)
            if term or trunc:
                break
        totals.append(tot)
    return totals


def is_button_press(ev: dict, body: str = "agent") -> bool:
    return (isinstance(ev, dict) and ev.get("kind") == "press" and ev.get("body", body) == body
            and "button" in str(ev.get("node", "reward_button")))


def collect_rollouts(policy: Any = "random", *, env_id: str | None = None,
                     env_kwargs: dict | None = None, n_episodes: int = 2, max_steps: int = 200,
                     seed: int = 0, actor: Any = "policy", env: Any = None,
                     layers: Sequence[str] = HOOK_POINTS, deterministic: bool = False,
                     device: str = "cpu") -> ActivationDataset:
    """Roll out in the real env and record an :class:`ActivationDataset`.

    ``policy``: checkpoint path, ``"random"`` (a fresh untrained network, seeded by ``seed``),
    an SB3 model or a :class:`HookedPolicy` -- the network whose activations are recorded.
    ``actor``: who picks actions: ``"policy"`` (that network, sampling), ``"random"``,
    ``"scripted"`` (TreeChopper) or ``f(obs) -> int``. ``env``: reuse this env (not closed).
    """
    own = env is None
    if own:
        if env_id is None and isinstance(policy, (str, Path)) and str(policy) != "random":
            from mtsandbox.agents.checkpoints import read_meta

            meta = read_meta(policy)
            env_id = meta.get("env_id")
            env_kwargs = {**(meta.get("env_kwargs") or {}), **(env_kwargs or {})}
        env = make_env(env_id or DEFAULT_ENV_ID, env_kwargs)
    try:
        meanings = None
        if hasattr(env.unwrapped, "get_action_meanings"):
            meanings = list(env.unwrapped.get_action_meanings())
        space = env.observation_space
        if hasattr(space, "spaces") and "rgb" in getattr(space, "spaces", {}):
            space = space["rgb"]
        hooked = load_hooked(policy, space, env.action_space, seed=seed,
                             action_meanings=meanings, device=device)
        rng = np.random.default_rng(seed)
        act = make_actor(actor, env, hooked, rng, deterministic)
        b = _Builder()

        def on_step(ep, t, obs, frame, a, info, info2, sem):
            lab = labels_from_info(info)
            lab.update(labels_from_semantic(sem))
            b.add(obs, frame, a, ep, t, lab, info2.get("events"), info.get("pose"))

        totals = run_env_episodes(env, act, n_episodes, max_steps, seed,
                                  ObsPipeline.for_hooked(hooked), on_step)
        meta = {"source": "env", "env_id": env.spec.id if env.spec else env_id,
                "policy": str(policy) if isinstance(policy, (str, Path)) else type(policy).__name__,
                "actor": actor if isinstance(actor, str) else "callable", "seed": seed,
                "episodes": totals}
        return b.build(hooked, layers, meanings, meta)
    finally:
        if own:
            env.close()


def _recorded_episodes(paths: Sequence[str | Path] | str | Path) -> list:
    try:
        from mtsandbox.tools.recording import find_episodes, load_episode
    except ImportError as e:  # pragma: no cover - the module exists in the repo
        raise RuntimeError(f"recording module unavailable: {e}") from None
    if isinstance(paths, (str, Path)):
        paths = [paths]
    ep_dirs: list[Path] = []
    for p in paths:
        ep_dirs.extend(find_episodes(p))
    if not ep_dirs:
        raise FileNotFoundError(f"no recorded episodes under {list(map(str, paths))}")
    eps = [load_episode(d) for d in ep_dirs]
    eps = [e for e in eps if e.frames is not None and e.n_frames > 1 and not e.agents]
    if not eps:
        raise ValueError("no single-agent recordings with frames found")
    return eps


def spaces_from_recordings(paths: Sequence[str | Path] | str | Path):
    """``(observation_space, action_space, action_meanings)`` of recorded episodes."""
    import gymnasium as gym

    ep = _recorded_episodes(paths)[0]
    meanings = ep.meta.get("action_meanings")
    n_act = len(meanings) if meanings else 12
    return (gym.spaces.Box(0, 255, tuple(ep.frames.shape[1:]), np.uint8),
            gym.spaces.Discrete(n_act), meanings)


def dataset_from_recordings(paths: Sequence[str | Path] | str | Path, policy: Any = "random",
                            layers: Sequence[str] = HOOK_POINTS, seed: int = 0,
                            device: str = "cpu") -> ActivationDataset:
    """Build a dataset from recorded episodes (``tools/recording/``): frames are the
    observations, labels come from the recorded info (no semantic labels; ``looking_at`` is not
    recorded). ``paths``: episode directories or roots holding them. ``policy`` as in
    :func:`~mtsandbox.interp.hooks.load_hooked` (``"random"``: a fresh network)."""
    eps = _recorded_episodes(paths)
    obs_space, act_space, meanings = spaces_from_recordings(paths)
    hooked = load_hooked(policy, obs_space, act_space, seed=seed, action_meanings=meanings,
                         device=device)
    b = _Builder()
    for ei, ep in enumerate(eps):
        for t, step in enumerate(ep.steps):
            info = (ep.meta.get("reset_info") or {}) if t == 0 else ep.steps[t - 1]
            a = step.get("action")
            if isinstance(a, (list, tuple)):
                a = a[0]
            frame = np.asarray(ep.frames[t])
            b.add(frame, frame[..., -3:] if frame.shape[-1] >= 3 else frame, int(a or 0), ei, t,
                  labels_from_info(info), step.get("events"), info.get("pose"))
    meta = {"source": "recordings", "paths": [str(e.path) for e in eps]}
    return b.build(hooked, layers, meanings, meta)
