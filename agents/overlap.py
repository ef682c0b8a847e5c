"""Overlapped rollouts: the learner infers for one half of the envs while the other half steps.

SB3's rollout is lockstep: infer for every env, send the actions, wait for every env, repeat.
On a CPU-only machine the learner's inference and the envs then take turns on the cores, and
``mtsandbox bench train`` measures the learner's own work at about as much wall time per step as
the wait for the envs. With ``rollout: overlap`` (config key) the envs are built as two groups of
separate ``SubprocVecEnv`` workers (:class:`GroupedVecEnv`) and :func:`collect_rollouts_overlapped`
runs them half a step apart::

    infer(group 1) -> send(group 1) -> wait(group 0) -> infer(group 0) -> send(group 0)
    -> wait(group 1) -> store the row of both groups -> ...

so group 1's inference runs while group 0's envs step and the other way round. Every
transition is still sampled from the current policy (the rollout never crosses an update), so
this is the same on-policy PPO; only the order in which random numbers are drawn differs from
the lockstep loop (one batch per group instead of one for all envs), so a seed gives a
different, equally valid run (and the same run every time: see tests/test_overlap.py).

Why a ``VecEnv`` subclass: SB3's ``SubprocVecEnv`` can only step all of its workers at once,
and its wrappers (``VecMonitor``, ``VecFrameStack``, ``VecTransposeImage``) assume the full
batch. Two complete wrapper stacks, one per group, keep every wrapper unchanged; the
:class:`GroupedVecEnv` in front of them is an ordinary lockstep ``VecEnv`` for everything else
(evaluation, ``predict``, SB3's own ``collect_rollouts``) and adds ``step_group_async`` /
``step_group_wait`` for the overlapped loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv


def _concat(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def _take(obs: Any, lo: int, hi: int) -> Any:
    if isinstance(obs, dict):
        return {k: v[lo:hi] for k, v in obs.items()}
    return obs[lo:hi]


class GroupedVecEnv(VecEnv):
    """Several VecEnvs presented as one: env ``i`` of the whole is env ``i - start`` of the
    group whose ``[start, stop)`` holds it. Lockstep ``step`` steps every group; the overlapped
    rollout steps one group at a time (``step_group_async`` / ``step_group_wait``)."""

    def __init__(self, groups: Sequence[VecEnv]) -> None:
        if not groups:
            raise ValueError("GroupedVecEnv needs at least one group")
        self.groups = list(groups)
        first = self.groups[0]
        for g in self.groups[1:]:
            if g.observation_space != first.observation_space or \
                    g.action_space != first.action_space:
                raise ValueError("GroupedVecEnv: every group needs the same spaces")
        self.bounds: list[tuple[int, int]] = []
        start = 0
        for g in self.groups:
            self.bounds.append((start, start + g.num_envs))
            start += g.num_envs
        super().__init__(start, first.observation_space, first.action_space)

    # -- the lockstep VecEnv interface --------------------------------------------------------
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        out: list[int | None] = []
        for g, (lo, _) in zip(self.groups, self.bounds, strict=True):
            out.extend(g.seed(None if seed is None else seed + lo))
        return out

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        for g, (lo, hi) in zip(self.groups, self.bounds, strict=True):
            g.set_options(options[lo:hi] if isinstance(options, list) else options)

    def reset(self) -> Any:
        obs = [g.reset() for g in self.groups]
        self.reset_infos = [info for g in self.groups for info in g.reset_infos]
        return _concat(obs)

    def step_async(self, actions: np.ndarray) -> None:
        for i in range(len(self.groups)):
            self.step_group_async(i, actions[self.bounds[i][0]:self.bounds[i][1]])

    def step_wait(self) -> Any:
        outs = [self.step_group_wait(i) for i in range(len(self.groups))]
        return (_concat([o[0] for o in outs]), np.concatenate([o[1] for o in outs]),
                np.concatenate([o[2] for o in outs]), [i for o in outs for i in o[3]])

    def step_group_async(self, i: int, actions: np.ndarray) -> None:
        self.groups[i].step_async(actions)

    def step_group_wait(self, i: int) -> Any:
        return self.groups[i].step_wait()

    def close(self) -> None:
        errors = []
        for g in self.groups:
            try:
                g.close()
            except Exception as e:  # close the others anyway
                errors.append(e)
        if errors:
            raise errors[0]

    def _locate(self, indices: Any) -> list[tuple[int, list[int]]]:
        """``[(group, [local indices])]`` for global ``indices`` (None = all), in order."""
        out: list[tuple[int, list[int]]] = []
        for idx in self._get_indices(indices):
            if not 0 <= idx < self.num_envs:
                raise IndexError(f"env index {idx} out of range (num_envs {self.num_envs})")
            gi = next(j for j, (lo, hi) in enumerate(self.bounds) if lo <= idx < hi)
            if out and out[-1][0] == gi:
                out[-1][1].append(idx - self.bounds[gi][0])
            else:
                out.append((gi, [idx - self.bounds[gi][0]]))
        return out

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [v for gi, local in self._locate(indices)
                for v in self.groups[gi].get_attr(attr_name, local)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        for gi, local in self._locate(indices):
            self.groups[gi].set_attr(attr_name, value, local)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None,
                   **method_kwargs: Any) -> list[Any]:
        return [v for gi, local in self._locate(indices)
                for v in self.groups[gi].env_method(method_name, *method_args, indices=local,
                                                    **method_kwargs)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [v for gi, local in self._locate(indices)
                for v in self.groups[gi].env_is_wrapped(wrapper_class, local)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [img for g in self.groups for img in g.get_images()]


def collect_rollouts_overlapped(model: OnPolicyAlgorithm, env: VecEnv, callback: BaseCallback,
                                rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
    """SB3's ``OnPolicyAlgorithm.collect_rollouts`` with two env groups half a step apart.

    Falls back to SB3's loop unless ``env`` is a :class:`GroupedVecEnv` of two groups and the
    action space is discrete (the only case the sandbox trains; no gSDE). The buffer gets the
    same rows SB3's loop would store (obs, action, reward with the time-limit bootstrap, episode
    start, value, log-prob); callbacks see one ``on_step`` per row with SB3's local names."""
    if not (isinstance(env, GroupedVecEnv) and len(env.groups) == 2
            and isinstance(model.action_space, spaces.Discrete) and not model.use_sde):
        return OnPolicyAlgorithm.collect_rollouts(model, env, callback, rollout_buffer,
                                                  n_rollout_steps)
    assert model._last_obs is not None, "No previous observation was provided"
    model.policy.set_training_mode(False)
    rollout_buffer.reset()
    callback.on_rollout_start()
    (lo0, hi0), (lo1, hi1) = env.bounds

    def infer(obs: Any) -> tuple[np.ndarray, th.Tensor, th.Tensor]:
        with th.no_grad():
            actions, values, log_probs = model.policy(obs_as_tensor(obs, model.device))
        return actions.cpu().numpy(), values, log_probs

    last_obs: Any = model._last_obs
    pending0 = infer(_take(last_obs, lo0, hi0))
    env.step_group_async(0, pending0[0])
    n_steps = 0
    new_obs: Any = None
    dones = np.zeros(env.num_envs, dtype=bool)
    while n_steps < n_rollout_steps:
        step1 = infer(_take(last_obs, lo1, hi1))
        env.step_group_async(1, step1[0])           # group 1 steps ...
        step0 = pending0
        obs0, rew0, done0, infos0 = env.step_group_wait(0)
        more = n_steps + 1 < n_rollout_steps
        if more:                                     # ... while the learner infers group 0
            pending0 = infer(obs0)
            env.step_group_async(0, pending0[0])
        obs1, rew1, done1, infos1 = env.step_group_wait(1)

        new_obs = _concat([obs0, obs1])
        rewards = np.concatenate([rew0, rew1])
        dones = np.concatenate([done0, done1])
        infos = list(infos0) + list(infos1)
        actions = np.concatenate([step0[0], step1[0]])
        values = th.cat([step0[1], step1[1]])
        log_probs = th.cat([step0[2], step1[2]])
        clipped_actions = actions  # SB3's local name, for callbacks
        model.num_timesteps += env.num_envs

        callback.update_locals(locals())
        if not callback.on_step():
            if more:  # group 0 is mid-step: finish it so every worker is idle again
                env.step_group_wait(0)
            return False
        model._update_info_buffer(infos, dones)
        n_steps += 1
        actions = actions.reshape(-1, 1)
        # Time-limit truncation: bootstrap with the value of the terminal observation (SB3 #633).
        for idx, done in enumerate(dones):
            if (done and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)):
                terminal_obs = model.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                with th.no_grad():
                    terminal_value = model.policy.predict_values(terminal_obs)[0]
                rewards[idx] += model.gamma * terminal_value
        starts: Any = model._last_episode_starts
        rollout_buffer.add(last_obs, actions, rewards, starts, values, log_probs)
        last_obs = model._last_obs = new_obs
        model._last_episode_starts = dones

    with th.no_grad():
        values = model.policy.predict_values(obs_as_tensor(new_obs, model.device))
    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True


class OverlapPPO(PPO):
    """SB3 ``PPO`` collecting with :func:`collect_rollouts_overlapped`; it adds no state, so
    its checkpoints are ordinary PPO checkpoints (``PPO.load`` reads them)."""

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback,
                         rollout_buffer: RolloutBuffer, n_rollout_steps: int) -> bool:
        return collect_rollouts_overlapped(self, env, callback, rollout_buffer, n_rollout_steps)


def use_overlapped_rollouts(model: PPO) -> None:
    """Make ``model`` (a PPO, new or loaded) collect with the overlapped loop from now on."""
    if not isinstance(model, PPO):
        raise TypeError(f"overlapped rollouts need a PPO model, got {type(model).__name__}")
    if not isinstance(model, OverlapPPO):
        model.__class__ = OverlapPPO
