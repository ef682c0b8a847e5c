"""PettingZoo ParallelEnv: the agent and its overseer(s) as learners in one real server.

``MinetestParallelEnv(scenario="OffSwitch", n_overseers=1)`` or, with a registered id's
versioned defaults, ``MinetestParallelEnv(env_id="MinetestSandbox/OffSwitch-v1")``: every body
observes its own first-person view and picks a discrete action each step. The agent's action
set is the single-agent scenario's (with ``use`` and ``place``); overseers get the base actions
plus ``use``. Rewards: the agent gets the scenario's observed reward; each overseer gets the
hidden performance (the principal's utility: trunks dug that it wanted). Button presses, switch
presses and corrections by an overseer mean what they mean in the single-agent scenarios.

Steps go through the single-agent env's own path (``MinetestEnv.step_bodies``): the agent's
observation carries the task's lights (intent, instruction, type), events and infos are the
same, and ``on_server_death="respawn"`` truncates every agent and respawns at the next reset.
Bodies a scenario leaves out of an episode (AbsentSupervisor's overseer when absent) are not in
``agents`` for that episode.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from mtsandbox.envs.core import ACTIONS, EXTRA_ACTIONS, MinetestEnv
from mtsandbox.envs.scenarios import _make_task, scenario_env_defaults

OVERSEER_ACTIONS = [*ACTIONS, "use"]


def _registered(env_id: str) -> tuple[str, dict, int]:
    """(scenario, versioned scenario defaults, max_episode_steps) of a registered scenario id."""
    import mtsandbox.envs  # noqa: F401  (registers the ids)

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown env id {env_id!r} ({e})") from None
    if "scenario" not in spec.kwargs:
        raise ValueError(f"{env_id} is not a scenario env (no overseer)")
    return (spec.kwargs["scenario"], dict(spec.kwargs.get("scenario_defaults") or {}),
            int(spec.max_episode_steps or 500))


class MinetestParallelEnv(ParallelEnv):
    metadata = {"render_modes": ["rgb_array"], "name": "mtsandbox_parallel_v0",  # noqa: RUF012
                "render_fps": 20}

    def __init__(self, scenario: str | None = None, n_overseers: int = 1,
                 scenario_kwargs: dict | None = None, max_steps: int | None = None,
                 render_mode: str | None = None, env_id: str | None = None,
                 **env_kwargs: Any) -> None:
        defaults: dict[str, Any] = {}
        if env_id is not None:
            reg_scenario, defaults, reg_steps = _registered(env_id)
            if scenario is not None and scenario != reg_scenario:
                raise ValueError(f"scenario {scenario!r} disagrees with {env_id}")
            scenario = reg_scenario
            max_steps = reg_steps if max_steps is None else max_steps
        scenario = scenario or "OffSwitch"
        kw = {**defaults, **(scenario_kwargs or {})}
        kw["n_overseers"] = n_overseers
        kw["scripted"] = False
        self.env = MinetestEnv(task=_make_task(scenario, kw), render_mode=render_mode,
                               **{**scenario_env_defaults(scenario), **env_kwargs})
        self.env.scenario = scenario
        self.env_id = env_id
        self.scenario = scenario
        self.render_mode = render_mode
        self.max_steps = 500 if max_steps is None else int(max_steps)
        names = ["overseer"] if n_overseers == 1 else [f"overseer{i}" for i in range(n_overseers)]
        self.possible_agents = ["agent", *names]
        self.agents: list[str] = []
        self._agent_actions = self.env.action_names
        self._spaces: dict[str, gym.spaces.Discrete] = {
            a: gym.spaces.Discrete(len(self._agent_actions if a == "agent" else OVERSEER_ACTIONS))
            for a in self.possible_agents}
        self._obs_space = self.env.observation_space
        self._t = 0

    @functools.cache  # noqa: B019
    def observation_space(self, agent: str) -> gym.Space:
        return self._obs_space

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gym.Space:
        return self._spaces[agent]

    def _others_obs(self) -> dict[str, Any]:
        """First-person views of the bodies after the agent (zeros once the server is gone)."""
        out: dict[str, Any] = {}
        for i, a in enumerate(self.agents[1:], start=1):
            if self.env.world is not None:
                out[a] = self.env.observe_body(i)
            else:
                out[a] = np.zeros(self._obs_space.shape, self._obs_space.dtype) \
                    if isinstance(self._obs_space, gym.spaces.Box) else self._obs_space.sample()
        return out

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, Any], dict[str, dict]]:
        obs0, info = self.env.reset(seed=seed, options=options)
        names = list(self.env.body_names)
        if names[:1] != ["agent"] or not set(names) <= set(self.possible_agents):
            raise RuntimeError(f"scenario spawned bodies {names}, expected 'agent' first and a "
                               f"subset of {self.possible_agents}")
        self.agents = names
        self._t = 0
        obs = {"agent": obs0, **self._others_obs()}
        return obs, {a: dict(info) if a == "agent" else {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("episode is over: call reset()")
        specs = []
        for i, a in enumerate(self.agents):
            act = actions.get(a, 0)
            if not self._spaces[a].contains(int(act)):
                raise ValueError(f"{a}: action {act!r} outside {self._spaces[a]}")
            names = self._agent_actions if i == 0 else OVERSEER_ACTIONS
            name = names[int(act)]
            specs.append(ACTIONS.get(name) or EXTRA_ACTIONS[name])
        obs0, reward, term, trunc, info = self.env.step_bodies(specs)
        self._t += 1
        obs = {"agent": obs0, **self._others_obs()}
        trunc = trunc or self._t >= self.max_steps
        hidden = float(info.get("hidden_performance", 0.0))
        rewards = {a: float(reward if a == "agent" else hidden) for a in self.agents}
        terms = {a: bool(term) for a in self.agents}
        truncs = {a: bool(trunc) for a in self.agents}
        events = info.get("events", [])
        infos = {a: (info if a == "agent" else {"events": events}) for a in self.agents}
        if term or trunc:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def render(self) -> np.ndarray | None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def parallel_env(**kwargs: Any) -> MinetestParallelEnv:
    return MinetestParallelEnv(**kwargs)
