"""Typed training configuration, loaded from YAML (``experiments/*.yaml``) plus overrides.

    cfg = load_config("experiments/treepunch_ppo.yaml", overrides=["seed=3", "lr=1e-4"])
    cfg = load_config(None, overrides=[...])            # defaults + overrides

A YAML file is a flat mapping of :class:`TrainConfig` field names (``env_kwargs`` is a nested
mapping). Overrides are ``key=value`` strings whose value is parsed as YAML (``n_envs=4``,
``grayscale=true``, ``env_kwargs.max_steps=200``, ``run_name=null``). Unknown keys and values of
the wrong type raise :class:`ConfigError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml


def experiments_dir() -> Path:
    """The folder of ``mtsandbox.experiments`` (where bare config names are looked up).

    Config files are data of the experiments package; its folder is found without importing it
    (agents sit below experiments in the layers, see ``[tool.importlinter]``)."""
    spec = importlib.util.find_spec("mtsandbox.experiments")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:  # pragma: no cover - the package always ships with mtsandbox
        raise ConfigError("cannot find the mtsandbox.experiments folder")
    return Path(locations[0]).resolve()


class ConfigError(ValueError):
    """A bad config file, key or value (the message is one line, fit for the user)."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Field docstrings below are the reference."""

    env_id: str = "MinetestSandbox/TreePunchShaped-v0"
    """Gymnasium id passed to ``gymnasium.make`` (after ``import mtsandbox.envs``)."""

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``gymnasium.make(env_id, **env_kwargs)``."""

    algo: str = "ppo"
    """Learning algorithm: ``"ppo"`` (stable-baselines3 PPO, the fields below) or
    ``"model_based"`` (:class:`~mtsandbox.agents.model_based.ModelBasedAgent`: a world model
    learned from its own play and an imagination actor-critic or a planner, set in ``mb``; it
    uses env_id, env_kwargs, seed, total_steps, device, eval_every, eval_episodes,
    checkpoint_every and run_dir from here and plays one env)."""

    mb: dict[str, Any] = field(default_factory=dict)
    """With ``algo: model_based``: fields of
    :class:`~mtsandbox.agents.model_based.MBConfig` (world model ``wm``, collection, updates,
    ``act: actor | plan``, ...); env_id, env_kwargs and seed come from this config."""

    seed: int = 0
    """Seed for the policy RNG and the envs (env ``i`` is seeded ``seed + i``)."""

    n_envs: int = 1
    """Parallel envs: ``SubprocVecEnv`` when > 1, ``DummyVecEnv`` otherwise (see vec_env)."""

    vec_env: str = "auto"
    """"auto" (subproc when n_envs > 1), "subproc", "dummy" (all in this process), or "ray"
    (env servers as Ray actors; local Ray, or a cluster via RAY_ADDRESS)."""

    rollout: str = "lockstep"
    """How PPO collects rollouts: "lockstep" (SB3's loop: infer for every env, then step them
    all) or "overlap" (two groups of envs half a step apart, the learner inferring for one group
    while the other steps; needs n_envs >= 2 and subproc/dummy envs; see agents/overlap.py)."""

    total_steps: int = 1_000_000
    """Total env steps (summed over envs) to train for; on resume, the target total."""

    device: str = "auto"
    """Torch device: ``"auto"`` (cuda if available, else cpu), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``."""

    torch_threads: int = 0
    """``torch.set_num_threads`` for the learner; 0 = auto (on CPU: 1 thread while collecting
    rollouts, all cores during PPO updates)."""

    frame_stack: int = 1
    """Number of consecutive frames stacked on the channel axis (1 = no stacking)."""

    grayscale: bool = False
    """Convert RGB observations to one grayscale channel before stacking."""

    init_from: str | None = None
    """Checkpoint (or run) directory whose policy weights initialise a new run (fine-tuning:
    fresh optimiser, this config's hyper-parameters and seed; observation and action spaces
    must match). Unlike ``--resume`` the step count starts at 0 in a new run directory."""

    init_reset_actor: bool = False
    """With ``init_from``: re-initialise the action head (SB3's orthogonal init, gain 0.01: a
    near-uniform policy) and keep the features and the critic, so the fine-tuned agent explores
    actions the source policy had stopped trying."""

    init_action_copy: dict[str, str] = field(default_factory=dict)
    """With ``init_from``: ``{target: source}`` action names; the target action's head row is
    set to the source's with its logit lowered by log 2, so the target starts half as likely as
    the source in every state (an exploration prior for an action the source policy never
    used, e.g. ``{use: punch}``)."""

    # --- PPO hyper-parameters ---
    n_steps: int = 128
    """PPO rollout length per env per update."""

    batch_size: int = 256
    """PPO minibatch size (ideally divides ``n_steps * n_envs``)."""

    n_epochs: int = 4
    """PPO optimisation epochs per rollout."""

    lr: float = 2.5e-4
    """Adam learning rate."""

    gamma: float = 0.99
    """Discount factor."""

    gae_lambda: float = 0.95
    """GAE lambda."""

    ent_coef: float = 0.01
    """Entropy bonus coefficient."""

    vf_coef: float = 0.5
    """Value loss coefficient."""

    clip: float = 0.1
    """PPO clip range for the policy ratio."""

    max_grad_norm: float = 0.5
    """Gradient norm clipping."""

    features_dim: int = 512
    """Width of the CNN's ``fc`` layer (the policy contract says 512)."""

    # --- evaluation / checkpoints / logging ---
    eval_every: int = 50_000
    """Evaluate on a separate env every this many env steps (0 = never during training)."""

    eval_episodes: int = 5
    """Episodes per evaluation."""

    eval_deterministic: bool = False
    """Evaluate with the argmax action instead of sampling."""

    checkpoint_every: int = 100_000
    """Save a checkpoint every this many env steps (0 = only the final one)."""

    progress_bar: bool = True
    """Show a rich progress bar."""

    log_interval: int = 1
    """Write TensorBoard / console scalars every this many PPO updates."""

    run_dir: str = "runs"
    """Root folder for runs; a run lives in ``<run_dir>/<run_name>``."""

    run_name: str | None = None
    """Run folder name; ``None`` means ``<task>__<algo>__<seed>__<YYYYmmdd-HHMMSS>``."""

    def resolved_run_name(self) -> str:
        """``run_name`` or the default ``task__algo__seed__time`` name."""
        if self.run_name:
            return self.run_name
        task = self.env_id.split("/")[-1].split(":")[-1]
        return f"{task}__{self.algo}__{self.seed}__{time.strftime('%Y%m%d-%H%M%S')}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build and type-check a config from a mapping (raises :class:`ConfigError`)."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source}: expected a mapping of settings, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        check_keys(data, cls, source)
        values: dict[str, Any] = {}
        for key, value in data.items():
            values[key] = _coerce(value, hints[key], f"{source}: {key}")
        cfg = cls(**values)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        if self.algo not in ("ppo", "model_based"):
            raise ConfigError(f"{source}: algo: must be 'ppo' or 'model_based', got '{self.algo}'")
        if self.mb and self.algo != "model_based":
            raise ConfigError(f"{source}: mb: only used with algo: model_based")
        for name in ("n_envs", "total_steps", "frame_stack", "n_steps", "batch_size", "n_epochs",
                     "eval_episodes", "log_interval", "features_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{source}: {name}: must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every", "torch_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{source}: {name}: must be >= 0, got {getattr(self, name)}")
        if self.vec_env not in ("auto", "subproc", "dummy", "ray"):
            raise ConfigError(f"{source}: vec_env: must be auto, subproc, dummy or ray, "
                              f"got {self.vec_env!r}")
        if self.rollout not in ("lockstep", "overlap"):
            raise ConfigError(f"{source}: rollout: must be lockstep or overlap, "
                              f"got {self.rollout!r}")
        if self.rollout == "overlap" and (self.n_envs < 2 or self.vec_env == "ray"):
            raise ConfigError(f"{source}: rollout: overlap needs n_envs >= 2 and subproc or "
                              f"dummy envs (n_envs {self.n_envs}, vec_env {self.vec_env})")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or dev.startswith("cuda:")):
            raise ConfigError(f"{source}: device: expected auto/cpu/cuda/cuda:N, got '{dev}'")
        rn = self.run_name
        if rn is not None and ("/" in rn or rn in ("", ".", "..")):
            raise ConfigError(f"{source}: run_name: must be a plain folder name, got '{rn}'")


def check_keys(data: dict[str, Any], cls: type, source: str = "config") -> None:
    """Raise :class:`ConfigError` (one line, with the closest field name) for the first key of
    ``data`` that is not a field of the dataclass ``cls``."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{key}'{hint}")


class DictConfig:
    """``to_dict`` / ``from_dict`` for a dataclass config; ``from_dict`` rejects unknown keys
    (:func:`check_keys`) naming :attr:`SOURCE` in the message."""

    SOURCE: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str | None = None) -> Self:
        """Raises :class:`ConfigError` for an unknown key."""
        check_keys(d or {}, cls, source or cls.SOURCE)
        return cls(**(d or {}))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; allow the harmless conversions."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(
            f"{where}: expected bool (true/false), got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        # PyYAML reads "1e6" as a string and 1e6-style floats are common in configs.
        num = _as_float(value)
        if num is not None and num.is_integer():
            return int(num)
        raise ConfigError(f"{where}: expected int, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        num = _as_float(value)  # PyYAML reads "3e-4" (no dot) as a string
        if num is not None:
            return num
        raise ConfigError(f"{where}: expected float, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected str, got {type(value).__name__} {value!r}")
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")  # pragma: no cover


def _as_float(value: Any) -> float | None:
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def resolve_config_path(path: str | Path) -> Path:
    """``path`` as given, or a name relative to ``experiments/`` (``smoke``, ``smoke.yaml``,
    ``offswitch/base``)."""
    p = Path(path)
    if p.exists():
        return p
    root = experiments_dir()
    if not p.is_absolute() and ".." not in p.parts:
        for cand in (root / p, root / f"{p}.yaml"):
            if cand.is_file():
                return cand
    raise ConfigError(f"config file not found: {path}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        line = str(e).replace("\n", " ")
        raise ConfigError(f"{p}: invalid YAML: {line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key=value`` (``a.b=value`` for nested mappings) overrides to a raw mapping."""
    out = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}': empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        target = out
        for i, part in enumerate(parts[:-1]):
            cur = target.get(part)
            if cur is None:
                cur = {}
            elif not isinstance(cur, dict):
                prefix = ".".join(parts[: i + 1])
                raise ConfigError(f"override '{item}': '{prefix}' is not a mapping")
            cur = dict(cur)
            target[part] = cur
            target = cur
        target[parts[-1]] = value
    return out


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults <- ``base`` mapping <- YAML file ``path`` <- ``overrides``; type-checked."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data.update(read_yaml(path))
        # Check the file on its own first so an error names the file, not the overrides.
        TrainConfig.from_dict(data, source=str(path))
    if not overrides:
        return TrainConfig.from_dict(data, source=str(path) if path is not None else "config")
    merged = apply_overrides(data, overrides)
    return TrainConfig.from_dict(merged, source="--set")
