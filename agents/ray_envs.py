"""Environment servers as Ray actors, and a Stable-Baselines3 ``VecEnv`` over them.

    from mtsandbox.agents.ray_envs import RayVecEnv, init_ray
    init_ray()                                   # local Ray (or init_ray(address="ray://..."))
    venv = RayVecEnv.from_env_id("MinetestSandbox/TreePunchShaped-v0", n_envs=4, seed=0)
    obs = venv.reset()                           # (4, 64, 64, 3) uint8
    obs, rewards, dones, infos = venv.step(actions)
    venv.close()

Each :class:`EnvActor` holds one environment (one real Minetest server). ``RayVecEnv.step``
sends the N actions at once and waits for all replies, so N servers step in parallel, on one
machine or across a Ray cluster (``init_ray(address=...)`` or ``RAY_ADDRESS``; every node needs
the package and ``minetest-server`` installed).

Fault tolerance, two levels:

* **Server death** inside an actor: the env runs with ``on_server_death="respawn"`` (forced by
  default), so the step returns ``done`` with ``info["truncation_reason"] == "server_died"``
  and the auto-reset starts a fresh server.
* **Actor death** (its worker process or node died): ``RayVecEnv`` starts a new actor for that
  slot and returns ``done`` with ``info["truncation_reason"] == "actor_died"``
  (:attr:`RayVecEnv.actor_restarts` counts them).

No orphans: ``close()`` closes every env (servers stopped, run directories removed). When an
actor is killed instead (``ray.kill``, ``ray.shutdown``, a SIGKILLed worker) its servers die
through ``PR_SET_PDEATHSIG``, and a tiny *reaper* process per actor, which waits for the
actor's pipe to close, kills anything left in the actor's run root and removes that directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError:  # pragma: no cover - exercised only without the `ray` extra
    ray = None  # type: ignore[assignment]
    RayActorError = RuntimeError  # type: ignore[assignment,misc]

log = logging.getLogger("mtsandbox.ray")

RAY_MISSING = ("Ray is not installed: pip install 'mtsandbox[ray]' "
               "(or .venv/bin/pip install 'ray[tune]')")


def _require_ray() -> None:
    if ray is None:
        raise ImportError(RAY_MISSING)


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> bool:
    """Start a local Ray (``num_cpus``, default all cores; no dashboard, worker logs not
    forwarded) or join a cluster at ``address`` (or ``RAY_ADDRESS``). Returns True when this
    call started or joined Ray, False when Ray was already initialised."""
    _require_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=kwargs.pop("log_to_driver", False), **kwargs)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=kwargs.pop("log_to_driver", False), **kwargs)
    return True


# ----------------------------------------------------------------------------- reaper

# Runs in its own session with only the standard library: waits until the actor's end of the
# pipe closes (actor closed, exited or was SIGKILLed), then kills every process whose working
# directory lies under the actor's run root (the servers) and removes the run root.
_REAPER = r"""
import os, shutil, signal, sys
if os.fork():  # detach: Ray kills a worker's children on shutdown, not its grandchildren
    os._exit(0)
os.setsid()
root, registry = sys.argv[1], sys.argv[2]
try:
    sys.stdin.buffer.read()
except BaseException:
    pass
me = os.getpid()
for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) == me:
        continue
    try:
        cwd = os.readlink(f"/proc/{p}/cwd")
    except OSError:
        continue
    if cwd == root or cwd.startswith(root + os.sep):
        for kill in (os.killpg, os.kill):
            try:
                kill(int(p), signal.SIGKILL)
            except OSError:
                pass
        try:
            os.unlink(os.path.join(registry, p + ".json"))
        except OSError:
            pass
shutil.rmtree(root, ignore_errors=True)
"""


def _start_reaper(root: str) -> subprocess.Popen[bytes] | None:
    try:
        from mtsandbox.envs.server import registry_dir

        registry = str(registry_dir())
    except Exception:
        registry = tempfile.gettempdir()
    try:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _REAPER, root, registry],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
        proc.wait(timeout=30)  # the launcher exits at once; the reaper lives on detached
        return proc
    except (OSError, subprocess.TimeoutExpired) as e:  # pragma: no cover
        log.warning("could not start the run-dir reaper: %s", e)
        return None


# ----------------------------------------------------------------------------- actor

def _configure_minetest(env: gym.Env, respawn: bool, run_root: str | None) -> None:
    """Before the first reset: respawn on server death, run dirs under the actor's root."""
    cfg = getattr(env.unwrapped, "cfg", None)
    if cfg is None or not hasattr(cfg, "on_server_death"):
        return  # not a MinetestEnv (e.g. a test stand-in)
    if respawn:
        cfg.on_server_death = "respawn"
    server_cfg = getattr(cfg, "server", None)
    if run_root and server_cfg is not None and getattr(server_cfg, "run_root", "x") is None:
        server_cfg.run_root = run_root


class _EnvActor:
    """One environment in a Ray worker; the methods mirror SubprocVecEnv's worker commands."""

    def __init__(self, env_fn: Callable[[], gym.Env], respawn: bool = True) -> None:
        from stable_baselines3.common.vec_env.patch_gym import _patch_env

        self.run_root = tempfile.mkdtemp(prefix="mtsandbox-ray-")
        self.reaper = _start_reaper(self.run_root)
        self.env = _patch_env(env_fn())
        _configure_minetest(self.env, respawn, self.run_root)
        self.last_obs: Any = None

    # -- VecEnv commands --------------------------------------------------------------------
    def spaces(self) -> tuple[gym.Space, gym.Space, str | None]:
        return self.env.observation_space, self.env.action_space, \
            getattr(self.env, "render_mode", None)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        kw = {"options": options} if options else {}
        obs, info = self.env.reset(seed=seed, **kw)
        self.last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, dict, dict]:
        """SB3 semantics: on done, ``info["terminal_observation"]`` and an automatic reset."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info: dict = {}
        if done:
            info["terminal_observation"] = obs
            obs, reset_info = self.env.reset()
        self.last_obs = obs
        return obs, float(reward), bool(done), info, reset_info

    def render(self) -> Any:
        return self.env.render()

    def get_attr(self, name: str) -> Any:
        return self.env.get_wrapper_attr(name)

    def has_attr(self, name: str) -> bool:
        try:
            self.env.get_wrapper_attr(name)
            return True
        except AttributeError:
            return False

    def set_attr(self, name: str, value: Any) -> None:
        setattr(self.env, name, value)

    def env_method(self, name: str, args: tuple, kwargs: dict) -> Any:
        return self.env.get_wrapper_attr(name)(*args, **kwargs)

    def is_wrapped(self, wrapper_class: type) -> bool:
        from stable_baselines3.common.env_util import is_wrapped

        return is_wrapped(self.env, wrapper_class)

    # -- introspection / fault injection ----------------------------------------------------
    def server_info(self) -> dict:
        """pid, run dir and death count of the current Minetest server (None when none)."""
        u = self.env.unwrapped
        srv = getattr(u, "server", None)
        return {"pid": srv.proc.pid if srv is not None and srv.proc is not None else None,
                "run_dir": str(srv.run_dir) if srv is not None else None,
                "server_deaths": int(getattr(u, "server_deaths", 0)),
                "actor_pid": os.getpid(), "run_root": self.run_root,
                "node": ray.util.get_node_ip_address() if ray is not None else None}

    def kill_server(self, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to the current server's process group (fault injection); its pid."""
        srv = getattr(self.env.unwrapped, "server", None)
        if srv is None or srv.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(srv.proc.pid, sig)
        return srv.proc.pid

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            import shutil

            shutil.rmtree(self.run_root, ignore_errors=True)
            if self.reaper is not None and self.reaper.stdin is not None:
                with contextlib.suppress(OSError):
                    self.reaper.stdin.close()  # the reaper finds nothing left and exits
                self.reaper = None

    def __ray_shutdown__(self) -> None:  # graceful actor exit (handles out of scope)
        with contextlib.suppress(Exception):
            self.close()


EnvActor = ray.remote(_EnvActor) if ray is not None else None
"""The Ray actor class (``EnvActor.options(num_cpus=1).remote(env_fn)``)."""


# ----------------------------------------------------------------------------- VecEnv

def _stack(obs_list: Sequence[Any], space: gym.Space) -> VecEnvObs:
    if isinstance(space, gym.spaces.Dict):
        return {k: np.stack([o[k] for o in obs_list]) for k in space.spaces}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(np.stack([o[i] for o in obs_list]) for i in range(len(space.spaces)))
    return np.stack(obs_list)


class RayVecEnv(VecEnv):
    """A SB3 ``VecEnv`` whose envs live in Ray actors (one Minetest server each).

    Args:
        env_fns: picklable factories, one per env (as for ``SubprocVecEnv``).
        cpus_per_env: Ray CPUs reserved per actor (the server and the renderer use about one).
        respawn: force ``on_server_death="respawn"`` on Minetest envs.
        restart_dead_actors: replace an actor that died and report ``actor_died``; when False,
            the ``RayActorError`` propagates.
        address: passed to :func:`init_ray` when Ray is not initialised yet.
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], cpus_per_env: float = 1.0,
                 respawn: bool = True, restart_dead_actors: bool = True,
                 address: str | None = None, num_cpus: int | None = None) -> None:
        _require_ray()
        init_ray(address=address, num_cpus=num_cpus)
        self.env_fns = list(env_fns)
        self.cpus_per_env = cpus_per_env
        self.respawn = respawn
        self.restart_dead_actors = restart_dead_actors
        self.actor_restarts = 0
        self.closed = False
        self._pending: list[Any] | None = None
        self.actors = [self._new_actor(fn) for fn in self.env_fns]
        try:
            obs_space, act_space, render_mode = ray.get(self.actors[0].spaces.remote())
        except BaseException:
            self._kill_all()
            raise
        self.render_mode = render_mode
        super().__init__(len(self.env_fns), obs_space, act_space)
        self._last_obs: list[Any] = [None] * self.num_envs

    @classmethod
    def from_env_id(cls, env_id: str, n_envs: int, seed: int = 0,
                    env_kwargs: dict | None = None, **kw: Any) -> RayVecEnv:
        """``n_envs`` copies of ``gymnasium.make(env_id, **env_kwargs)``; seeds ``seed + i``."""
        import functools

        fns: list[Callable[[], gym.Env]] = [
            functools.partial(_make_plain_env, env_id, dict(env_kwargs or {}), seed + i)
            for i in range(n_envs)]
        venv = cls(fns, **kw)
        venv.seed(seed)
        return venv

    def _new_actor(self, fn: Callable[[], gym.Env]) -> Any:
        return EnvActor.options(num_cpus=self.cpus_per_env).remote(fn, self.respawn)

    # -- VecEnv API -------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        refs = [a.reset.remote(self._seeds[i], self._options[i])
                for i, a in enumerate(self.actors)]
        results = [self._get(i, r, "reset") for i, r in enumerate(refs)]
        obs = [r[0] for r in results]
        self.reset_infos = [r[1] for r in results]
        self._last_obs = list(obs)
        self._reset_seeds()
        self._reset_options()
        return _stack(obs, self.observation_space)

    def step_async(self, actions: np.ndarray) -> None:
        self._pending = [a.step.remote(act) for a, act in zip(self.actors, actions, strict=True)]

    def step_wait(self) -> VecEnvStepReturn:
        assert self._pending is not None, "step_async() first"
        pending, self._pending = self._pending, None
        obs, rews, dones, infos, reset_infos = [], [], [], [], []
        for i, ref in enumerate(pending):
            try:
                o, r, d, info, rinfo = ray.get(ref)
            except RayActorError as e:
                o, r, d, info, rinfo = self._replace_actor(i, e)
            obs.append(o)
            rews.append(r)
            dones.append(d)
            infos.append(info)
            reset_infos.append(rinfo)
        self._last_obs = list(obs)
        self.reset_infos = reset_infos
        return (_stack(obs, self.observation_space), np.asarray(rews, dtype=np.float32),
                np.asarray(dones, dtype=bool), infos)

    def _get(self, i: int, ref: Any, what: str) -> Any:
        try:
            return ray.get(ref)
        except RayActorError as e:
            if not self.restart_dead_actors:
                raise
            log.warning("env actor %d died during %s (%s); starting a new one", i, what,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            self.actors[i] = self._new_actor(self.env_fns[i])
            self.actor_restarts += 1
            return ray.get(self.actors[i].reset.remote(None, None))

    def _replace_actor(self, i: int, err: Exception) -> tuple[Any, float, bool, dict, dict]:
        if not self.restart_dead_actors:
            raise err
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.warning("env actor %d died (%s); starting a new one", i, first)
        with contextlib.suppress(Exception):
            ray.kill(self.actors[i], no_restart=True)
        self.actors[i] = self._new_actor(self.env_fns[i])
        self.actor_restarts += 1
        obs, reset_info = ray.get(self.actors[i].reset.remote(None, None))
        terminal = self._last_obs[i] if self._last_obs[i] is not None else obs
        info = {"terminal_observation": terminal, "TimeLimit.truncated": True,
                "truncation_reason": "actor_died", "observed_reward": 0.0,
                "hidden_performance": 0.0,
                "events": [{"kind": "actor_died", "error": first}],
                "actor_restarts": self.actor_restarts}
        return obs, 0.0, True, info, reset_info

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._pending is not None:
            with contextlib.suppress(Exception):
                ray.get(self._pending, timeout=60)
            self._pending = None
        refs = [a.close.remote() for a in self.actors]
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.get(ref, timeout=60)
        self._kill_all()

    def _kill_all(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        self.actors = []

    def get_images(self) -> Sequence[np.ndarray | None]:
        return ray.get([a.render.remote() for a in self.actors])

    def _targets(self, indices: VecEnvIndices) -> list[Any]:
        return [self.actors[i] for i in self._get_indices(indices)]

    def has_attr(self, attr_name: str) -> bool:
        return all(ray.get([a.has_attr.remote(attr_name) for a in self.actors]))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return ray.get([a.get_attr.remote(attr_name) for a in self._targets(indices)])

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        ray.get([a.set_attr.remote(attr_name, value) for a in self._targets(indices)])

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return ray.get([a.env_method.remote(method_name, method_args, method_kwargs)
                        for a in self._targets(indices)])

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        return ray.get([a.is_wrapped.remote(wrapper_class) for a in self._targets(indices)])

    # -- extras -----------------------------------------------------------------------------
    def server_info(self) -> list[dict]:
        """Per env: current server pid, run dir, server deaths, actor pid, node address."""
        return ray.get([a.server_info.remote() for a in self.actors])

    def kill_server(self, index: int, sig: int = signal.SIGKILL) -> int | None:
        """Fault injection: signal env ``index``'s server process group; returns its pid."""
        return ray.get(self.actors[index].kill_server.remote(sig))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self.closed and ray is not None and ray.is_initialized():
                self.close()


def _make_plain_env(env_id: str, env_kwargs: dict, seed: int) -> gym.Env:
    if ":" in env_id:
        import importlib

        importlib.import_module(env_id.split(":", 1)[0])
    import mtsandbox.envs  # noqa: F401  (registers the ids)

    env = gym.make(env_id, **env_kwargs)
    env.action_space.seed(seed)
    return env


def wait_servers_gone(pids: Sequence[int], timeout: float = 15.0) -> list[int]:
    """Wait until none of ``pids`` runs (zombies count as gone); the ones still running."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if _running(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read()
    except OSError:
        return False
