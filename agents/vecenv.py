"""Vectorised environments for training and evaluation: ``gymnasium.make`` with the sandbox's
defaults, SB3's VecEnvs (subprocess, in-process or Ray), frame stacking and grayscale.
"""

from __future__ import annotations

import functools
import signal
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecMonitor,
)

from mtsandbox.agents.config import TrainConfig

# gymnasium's GrayscaleObservation weights (ITU-R BT.709 luma): what policies trained with
# ``grayscale=True`` saw, so every other grayscale path uses the same.
GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """``(..., H, W, 3)`` uint8 RGB -> ``(..., H, W, 1)`` uint8, exactly as
    ``gymnasium.wrappers.GrayscaleObservation(env, keep_dim=True)`` computes it."""
    gray = np.sum(np.multiply(rgb, GRAY_WEIGHTS), axis=-1).astype(np.uint8)
    return gray[..., None]


class EnvCreationError(RuntimeError):
    """``gymnasium.make`` failed (unknown id, bad kwargs, ...); the message is one line."""


def import_env_module(env_id: str) -> None:
    """Import whatever registers ``env_id``: ``mtsandbox.envs`` and ``module:`` prefixes."""
    import importlib

    try:
        importlib.import_module("mtsandbox.envs")
    except ImportError:  # pragma: no cover - envs package always exists in the repo
        pass
    if ":" in env_id:
        importlib.import_module(env_id.split(":", 1)[0])


def make_env(env_id: str, env_kwargs: dict[str, Any], seed: int, grayscale: bool,
              in_subprocess: bool,
              env_wrapper: Callable[[gym.Env], gym.Env] | None = None) -> gym.Env:
    if in_subprocess:
        # Ctrl-C goes to the whole process group; only the learner handles it, and then closes
        # the workers through their pipes (a worker dying mid-step would hang close()).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import_env_module(env_id)
        if env_id.startswith("MinetestSandbox/"):
            # Long runs survive a dead or hung server: the episode is truncated with the
            # reason in info, a new server starts, training goes on.
            env_kwargs = {"on_server_death": "respawn", **env_kwargs}
        env = gym.make(env_id, **env_kwargs)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EnvCreationError(f"cannot create env {env_id!r}: {msg}") from e
    if env_wrapper is not None:  # e.g. a recorder: sees the env's own RGB observations
        env = env_wrapper(env)
    if grayscale:
        env = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    env.action_space.seed(seed)
    return env


def make_vec_env(cfg: TrainConfig, n_envs: int | None = None, seed: int | None = None,
                 force_dummy: bool = False,
                 env_wrapper: Callable[[gym.Env], gym.Env] | None = None) -> VecEnv:
    """``n_envs`` (default ``cfg.n_envs``) envs: Subproc (n > 1) or Dummy VecEnv, VecMonitor,
    then VecFrameStack (channel-last) when ``cfg.frame_stack > 1``. Env ``i`` is seeded
    ``seed + i`` (default ``cfg.seed``) on the first reset. ``env_wrapper`` (picklable when
    n > 1) wraps each env right after ``gymnasium.make``, before the grayscale wrapper."""
    n = cfg.n_envs if n_envs is None else n_envs
    base_seed = cfg.seed if seed is None else seed
    use_ray = cfg.vec_env == "ray" and not force_dummy
    use_subproc = not use_ray and not force_dummy and (
        cfg.vec_env == "subproc" or (cfg.vec_env == "auto" and n > 1))
    fns: list[Callable[[], gym.Env]] = [
        functools.partial(make_env, cfg.env_id, dict(cfg.env_kwargs), base_seed + i,
                          cfg.grayscale, use_subproc or use_ray, env_wrapper)
        for i in range(n)
    ]
    venv: VecEnv
    if cfg.rollout == "overlap" and n >= 2 and not use_ray and not force_dummy:
        return _grouped_vec_env(cfg, fns, base_seed, use_subproc)
    if use_ray:  # env servers as Ray actors (local Ray, or the cluster in RAY_ADDRESS)
        from mtsandbox.agents.ray_envs import RayVecEnv

        venv = RayVecEnv(fns)
    else:
        if use_subproc:
            preload_worker_modules()
        venv = SubprocVecEnv(fns) if use_subproc else DummyVecEnv(fns)
    try:
        venv.seed(base_seed)
        venv = _monitor_and_stack(venv, cfg)
    except BaseException:
        close_quietly(venv)
        raise
    return venv


def _monitor_and_stack(venv: VecEnv, cfg: TrainConfig) -> VecEnv:
    """The wrappers every training VecEnv gets: VecMonitor, then VecFrameStack (channel-last)
    when ``cfg.frame_stack > 1``."""
    venv = VecMonitor(venv)
    if cfg.frame_stack > 1:
        venv = VecFrameStack(venv, n_stack=cfg.frame_stack, channels_order="last")
    return venv


def _grouped_vec_env(cfg: TrainConfig, fns: list[Callable[[], gym.Env]], base_seed: int,
                     use_subproc: bool) -> VecEnv:
    """Two halves of the envs, each its own (Subproc|Dummy)VecEnv with the usual wrappers and
    the channel-first transpose SB3 would add, behind one GroupedVecEnv (``rollout: overlap``,
    see :mod:`mtsandbox.agents.overlap`). Env ``i`` is seeded ``base_seed + i`` as before."""
    from stable_baselines3.common.preprocessing import is_image_space, \
        is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    from mtsandbox.agents.overlap import GroupedVecEnv

    if use_subproc:
        preload_worker_modules()
    half = len(fns) // 2
    groups: list[VecEnv] = []
    try:
        for part in (fns[:half], fns[half:]):
            g: VecEnv = SubprocVecEnv(part) if use_subproc else DummyVecEnv(part)
            groups.append(g)  # closed on failure even before it is wrapped
            g = _monitor_and_stack(g, cfg)
            space = g.observation_space
            if (isinstance(space, gym.spaces.Box) and is_image_space(space)
                    and not is_image_space_channels_first(space)):
                g = VecTransposeImage(g)
            groups[-1] = g
        venv = GroupedVecEnv(groups)
        venv.seed(base_seed)
    except BaseException:
        for g in groups:
            close_quietly(g)
        raise
    return venv


# What every SubprocVecEnv worker imports (SB3 pulls in torch): imported once in the
# forkserver, so each worker forks with them loaded instead of importing them again (start-up
# was ~1.6 s of CPU per env on 2 cores, most of it imports).
WORKER_PRELOAD = ["__main__",  # the forkserver's default list
                  "stable_baselines3.common.vec_env.subproc_vec_env", "mtsandbox.envs",
                  "mtsandbox.agents.vecenv"]


def preload_worker_modules() -> None:
    """Ask the forkserver to import :data:`WORKER_PRELOAD` (a no-op once it runs)."""
    import multiprocessing as mp

    try:
        mp.set_forkserver_preload(WORKER_PRELOAD)
    except Exception:  # not every platform has a forkserver
        pass


def _base_vec_envs(venv: Any) -> list[Any]:
    """The innermost VecEnvs under ``venv``'s wrappers (every group of a GroupedVecEnv)."""
    while hasattr(venv, "venv"):
        venv = venv.venv
    groups = getattr(venv, "groups", None)
    if groups is not None:
        return [b for g in groups for b in _base_vec_envs(g)]
    return [venv]


def _drain_pending(base: Any, timeout: float = 5.0) -> None:
    """A Ctrl-C inside ``SubprocVecEnv.step_wait`` leaves ``waiting`` set after some workers'
    replies were already read; SB3's ``close()`` then reads every worker again and blocks
    forever on those. Read only the replies that arrive (each within ``timeout`` s), then
    clear ``waiting`` so ``close()`` goes straight to telling the workers to close."""
    if not getattr(base, "waiting", False) or getattr(base, "closed", False):
        return
    for remote in getattr(base, "remotes", []):
        try:
            if remote.poll(timeout):
                remote.recv()
        except Exception:  # a dead worker or a half-read message: close() copes below
            pass
    base.waiting = False


def close_quietly(venv: Any) -> None:
    """Close a VecEnv, never raising and never hanging on a step interrupted half-way (used in
    ``finally`` blocks)."""
    if venv is None:
        return
    bases = _base_vec_envs(venv)
    for base in bases:
        _drain_pending(base)
    try:
        venv.close()
        return
    except Exception as e:  # a worker that already died, a broken pipe, ...
        warnings.warn(f"error while closing envs: {e!r}", stacklevel=2)
    # SubprocVecEnv.close() stops at the first dead worker: ask the live ones to close their
    # env (so e.g. a Minetest server is shut down), and only then terminate stragglers.
    for base in bases:
        procs, remotes = getattr(base, "processes", None), getattr(base, "remotes", None)
        if not procs or not remotes:
            continue
        for remote, proc in zip(remotes, procs, strict=False):
            if proc.is_alive():
                try:
                    remote.send(("close", None))
                except Exception:
                    pass
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def get_action_meanings(venv: VecEnv) -> list[str] | None:
    """``get_action_meanings()`` of env 0 if the env provides one."""
    try:
        meanings = venv.env_method("get_action_meanings", indices=[0])[0]
        return [str(m) for m in meanings]
    except Exception:
        return None


def env_version_info(env_id: str, venv: VecEnv | None = None) -> dict[str, Any]:
    """Registered version of ``env_id`` (the ``-vN`` suffix), entry point and, if the env sets
    ``metadata["version"]``, that too."""
    info: dict[str, Any] = {"env_version": None, "env_entry_point": None,
                            "env_metadata_version": None}
    try:
        import_env_module(env_id)
        spec = gym.spec(env_id.split(":", 1)[-1])
        info["env_version"] = spec.version
        info["env_entry_point"] = str(spec.entry_point)
    except Exception:
        pass
    if venv is not None:
        try:
            info["env_metadata_version"] = venv.get_attr("metadata", indices=[0])[0].get("version")
        except Exception:
            pass
    return info
