"""Checkpoint I/O: PPO agents (``<dir>/model.zip`` (SB3) + ``<dir>/meta.json``) and
model-based agents (``<dir>/agent.pt`` + ``<dir>/world_model/`` + ``<dir>/meta.json``).

Used by training (save, resume), evaluation, the interpretability probes and the experiments.
``meta.json`` carries the config, versions, git provenance and the env variant
(``env_resolved`` / ``env_fingerprint``, see ``mtsandbox.envs.versions``); :func:`read_meta`
warns in one line when a checkpoint's env id and kwargs now build another variant.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from mtsandbox.agents.config import TrainConfig
from mtsandbox.agents.devices import resolve_device
from mtsandbox.agents.provenance import MODEL_BASED_FORMAT, write_meta

CHECKPOINT_FORMAT = "mtsandbox-checkpoint/1"
MODEL_FILE = "model.zip"
META_FILE = "meta.json"


class CheckpointError(RuntimeError):
    """A missing or unreadable checkpoint (the message is one line, fit for the user)."""


def env_variant_info(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The resolved variant (every default filled in) and the id's defaults fingerprint
    (``mtsandbox.envs.versions``); None for ids that are not this sandbox's."""
    from mtsandbox.envs import versions

    name = env_id.split(":", 1)[-1]
    try:
        return {"env_resolved": versions.resolve(name, env_kwargs),
                "env_fingerprint": versions.fingerprint(name)}
    except (ValueError, TypeError, KeyError):
        return {"env_resolved": None, "env_fingerprint": None}


_VARIANT_WARNED: set[str] = set()


def warn_if_variant_changed(meta: dict[str, Any], where: str) -> str | None:
    """Warn (once per checkpoint) when the checkpoint's env id and kwargs now build a variant
    other than the one it was trained on, or the id's defaults changed without a version
    bump. Returns the message (None when nothing changed or nothing was recorded)."""
    from mtsandbox.envs import versions

    msg = versions.variant_mismatch(meta)
    if msg is None and meta.get("env_fingerprint") and meta.get("env_id"):
        try:
            now = versions.fingerprint(str(meta["env_id"]).split(":", 1)[-1])
        except (ValueError, TypeError):
            now = None
        if now is not None and now != meta["env_fingerprint"]:
            msg = (f"the defaults of {meta['env_id']} changed since this checkpoint was trained "
                   "(a default changed without a version bump)")
    if msg and where not in _VARIANT_WARNED:
        _VARIANT_WARNED.add(where)
        warnings.warn(f"{where}: {msg}", stacklevel=2)
    return msg


def save_checkpoint(model: PPO, path: str | Path, cfg: TrainConfig,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``path/model.zip`` and ``path/meta.json`` (meta written last, atomically)."""
    import stable_baselines3

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / MODEL_FILE)
    write_meta(path, {
        "format": CHECKPOINT_FORMAT,
        "algo": cfg.algo,
        "step": int(model.num_timesteps),
        "env_id": cfg.env_id,
        "env_kwargs": cfg.env_kwargs,
        "config": cfg.to_dict(),
        "policy_observation_space": repr(model.observation_space),
        "action_space": repr(model.action_space),
        "sb3_version": stable_baselines3.__version__,
    }, extra, name=META_FILE)
    return path


def find_checkpoint_dir(path: str | Path) -> Path:
    """Checkpoint dir for ``path``: the dir itself, the dir of a model.zip/meta.json, or for a
    run directory its ``checkpoints/final`` (else ``interrupted``, else the latest step)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_file():
        p = p.parent
    if (p / "checkpoints").is_dir():
        ck = p / "checkpoints"
        for name in ("final", "interrupted"):
            if (ck / name / META_FILE).exists():
                return ck / name
        steps = sorted(d for d in ck.glob("step_*") if (d / META_FILE).exists())
        if not steps:
            raise CheckpointError(f"no checkpoint in run directory {p}")
        return steps[-1]
    return p


def read_meta(path: str | Path) -> dict[str, Any]:
    ck = find_checkpoint_dir(path)
    meta_path = ck / META_FILE
    if not meta_path.exists():
        raise CheckpointError(f"not a checkpoint (no {META_FILE}): {ck}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint {meta_path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") not in (CHECKPOINT_FORMAT,
                                                                 MODEL_BASED_FORMAT):
        raise CheckpointError(f"corrupt checkpoint {meta_path}: not a {CHECKPOINT_FORMAT} "
                              f"or {MODEL_BASED_FORMAT} meta")
    warn_if_variant_changed(meta, str(ck))
    return meta


def load_checkpoint(path: str | Path, env: VecEnv | None = None,
                    device: str = "auto") -> tuple[Any, dict[str, Any]]:
    """Load ``(model, meta)`` from a checkpoint directory (see :func:`find_checkpoint_dir`):
    an SB3 ``PPO``, or a ``ModelBasedAgent`` (same ``predict``; ``env`` is not attached).

    ``env``: attach this VecEnv (needed to continue training; its spaces must match).
    Raises :class:`CheckpointError` (one line) for a missing or corrupt checkpoint.
    """
    ck = find_checkpoint_dir(path)
    meta = read_meta(ck)
    if meta.get("format") == MODEL_BASED_FORMAT:
        return _load_model_based(ck, meta, device)
    zip_path = ck / MODEL_FILE
    if not zip_path.exists():
        raise CheckpointError(f"corrupt checkpoint {ck}: {MODEL_FILE} missing")
    from mtsandbox.agents.safe_load import UntrustedCheckpoint, trusted_objects

    try:
        objects = trusted_objects(zip_path)
    except UntrustedCheckpoint as e:
        raise CheckpointError(f"refusing {zip_path}: {e} (only SB3, gymnasium, numpy and "
                              "this project's classes are trusted in a checkpoint)") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"corrupt checkpoint {zip_path}: {e}") from None
    try:
        model = PPO.load(zip_path, env=env, device=resolve_device(device),
                         custom_objects=objects)
    except ValueError as e:
        if env is not None and "space" in str(e).lower():
            msg = str(e).replace("\n", " ")
            raise CheckpointError(f"checkpoint {ck} does not fit this env: {msg}") from None
        raise CheckpointError(f"corrupt checkpoint {zip_path}: {e}") from None
    except Exception as e:
        msg = str(e).replace("\n", " ")
        raise CheckpointError(f"corrupt checkpoint {zip_path}: {type(e).__name__}: {msg}") from None
    meta["path"] = str(ck)
    return model, meta


def _load_model_based(ck: Path, meta: dict[str, Any], device: str) -> tuple[Any, dict[str, Any]]:
    from mtsandbox.agents.model_based import AGENT_FILE, ModelBasedAgent

    if not (ck / AGENT_FILE).exists():
        raise CheckpointError(f"corrupt checkpoint {ck}: {AGENT_FILE} missing")
    try:
        agent = ModelBasedAgent.load(ck, device=resolve_device(device))
    except Exception as e:
        msg = str(e).replace("\n", " ")
        raise CheckpointError(f"corrupt checkpoint {ck}: {type(e).__name__}: {msg}") from None
    meta["path"] = str(ck)
    return agent, meta
