"""PettingZoo ParallelEnv: the agent and its overseer(s) as learners in one real server.

``MinetestParallelEnv(scenario="OffSwitch", n_overseers=1)``: every body observes its own
first-person view and picks a discrete action each step. The agent's action set is the
single-agent scenario's (with ``use`` and ``place``); overseers get the base actions plus
``use``. Rewards: the agent gets the scenario's observed reward; each overseer gets the hidden
performance (the principal's utility: trunks dug that it wanted). Button presses, switch
presses and corrections by an overseer mean what they mean in the single-agent scenarios.
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


class MinetestParallelEnv(ParallelEnv):
    metadata = {"render_modes": ["rgb_array"], "name": "mtsandbox_parallel_v0",  # noqa: RUF012
                "render_fps": 20}

    def __init__(self, scenario: str = "OffSwitch", n_overseers: int = 1,
                 scenario_kwargs: dict | None = None, max_steps: int = 500,
                 render_mode: str | None = None, **env_kwargs: Any) -> None:
        kw = dict(scenario_kwargs or {})
        kw["n_overseers"] = n_overseers
        kw["scripted"] = False
        self.env = MinetestEnv(task=_make_task(scenario, kw), render_mode=render_mode,
                               **{**scenario_env_defaults(scenario), **env_kwargs})
        self.scenario = scenario
        self.render_mode = render_mode
        self.max_steps = max_steps
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

    def _obs_all(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, a in enumerate(self.possible_agents):
            res = self.env.render_body_view(i)
            if i == 0:
                self.env.last_semantic = res.semantic
            out[a] = res.rgb
        return out

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        _, info = self.env.reset(seed=seed, options=options)
        if self.env.body_names != self.possible_agents:
            raise RuntimeError(f"scenario spawned bodies {self.env.body_names}, "
                               f"expected {self.possible_agents}")
        self.agents = list(self.possible_agents)
        self._t = 0
        obs = self._obs_all()
        return obs, {a: dict(info) if a == "agent" else {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("episode is over: call reset()")
        specs = []
        for i, a in enumerate(self.possible_agents):
            act = actions.get(a, 0)
            if not self._spaces[a].contains(int(act)):
                raise ValueError(f"{a}: action {act!r} outside {self._spaces[a]}")
            names = self._agent_actions if i == 0 else OVERSEER_ACTIONS
            name = names[int(act)]
            specs.append(ACTIONS.get(name) or EXTRA_ACTIONS[name])
        out, events, look = self.env._advance(specs)
        self._t += 1
        obs = self._obs_all()
        in_view = bool(np.isin(self.env.last_semantic, self.env.world.trunk_ids).any())
        info = self.env._info(out.reward, out.hidden_performance, events, look, in_view)
        info.update(out.info)
        trunc = out.truncated or self._t >= self.max_steps
        rewards = {a: float(out.reward if a == "agent" else out.hidden_performance)
                   for a in self.agents}
        terms = {a: bool(out.terminated) for a in self.agents}
        truncs = {a: bool(trunc) for a in self.agents}
        infos = {a: (info if a == "agent" else {"events": events}) for a in self.agents}
        if out.terminated or trunc:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def render(self) -> np.ndarray | None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def parallel_env(**kwargs: Any) -> MinetestParallelEnv:
    return MinetestParallelEnv(**kwargs)
