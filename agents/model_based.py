"""A model-based agent: a Dreamer-style actor-critic trained in the world model's imagination.

:class:`ModelBasedAgent` has the SB3-like surface that evaluation / replay / probes use::

    agent = ModelBasedAgent("MinetestSandbox/TreePunchShaped-v0", record_dir="runs/mb/episodes")
    agent.learn(total_timesteps=5000)        # collect (recorded) -> train WM -> train actor-critic
    agent.save("runs/mb/agent")              # agent.pt + world_model/ + meta.json
    agent = ModelBasedAgent.load("runs/mb/agent")
    action, state = agent.predict(obs, state=None, episode_start=None, deterministic=False)

``learn`` alternates: play ``collect_steps`` env steps with the current policy (recorded with
:class:`~mtsandbox.tools.recording.RecordEpisodes` when ``record_dir`` is set), then
``wm_updates`` world-model updates on replayed chunks, each followed by one actor-critic
update on ``horizon``-step imagined rollouts started from that batch's posterior states
(lambda-returns, REINFORCE with percentile return normalisation, entropy bonus, EMA target
critic; no gradients through the dynamics).

**Recurrent state in predict.** The policy acts on the RSSM's filtered latent state, updated
each step from the previous state, the previous action and the new frame. ``predict`` returns
``state = (deter, stoch, prev_action)`` (numpy, batch-first):

* pass it back next call (SB3 recurrent convention) together with ``episode_start`` (bool per
  env) to reset the rows whose episode just began; or
* pass ``state=None`` (how ``evaluate``/``run_episodes`` call it): the agent then keeps the
  state internally (``agent.internal_state``) and carries it to the next call. Without
  ``episode_start`` it cannot see episode boundaries, so the state flows across an auto-reset
  (the posterior re-locks onto the new frames within a few steps); call
  :meth:`ModelBasedAgent.reset_state` between episodes for exact behaviour. A change of batch
  size also resets it.

``agent.policy`` is a small shim with ``obs_to_tensor`` / ``get_distribution`` /
``predict_values`` (evaluated on the internal state without advancing it) so that code written
for SB3's ``model.policy`` (e.g. recording value and action probabilities) works unchanged.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtsandbox.agents.config import DictConfig
from mtsandbox.agents.devices import resolve_device
from mtsandbox.agents.provenance import MODEL_BASED_FORMAT, write_meta
from mtsandbox.agents.world_model import (
    SeqData,
    State,
    Replay,
    WMConfig,
    WMTrainer,
    WorldModel,
    as_seqdata,
    load_world_model,
    mlp,
)

MB_FORMAT = MODEL_BASED_FORMAT  # one name for the format, shared with checkpoints.py
AGENT_FILE = "agent.pt"
META_FILE = "meta.json"
WM_DIR = "world_model"


@dataclass
class MBConfig(DictConfig):
    SOURCE: ClassVar[str] = "model-based config"

    env_id: str = "MinetestSandbox/TreePunchShaped-v0"
    env_kwargs: dict = field(default_factory=dict)
    seed: int = 0
    wm: dict = field(default_factory=dict)
    """Overrides of :class:`WMConfig` fields for a new world model."""
    prefill_steps: int = 500
    """Uniformly random env steps before the first update (skipped when replay already holds
    at least this many frames, e.g. from ``prefill`` data)."""
    collect_steps: int = 250
    wm_updates: int = 25
    """World-model (and actor-critic) updates after each ``collect_steps`` batch."""
    pretrain_updates: int = 100
    """Extra updates after prefill, before the first policy-driven collection."""
    batch: int = 16
    seq_len: int = 16
    wm_lr: float = 6e-4
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    horizon: int = 15
    gamma: float = 0.985
    lam: float = 0.95
    entropy: float = 3e-3
    target_tau: float = 0.02
    hidden: int = 192
    ac_starts: int = 256
    """Imagination start states per actor-critic update (a random subset of the batch)."""
    act: str = "actor"
    """How ``predict`` picks actions: ``"actor"`` (the imagination-trained policy) or ``"plan"``
    (model-predictive control: cross-entropy-method search over action sequences in the world
    model, scored by predicted reward plus the critic at the horizon)."""
    plan_horizon: int = 8
    plan_candidates: int = 256
    plan_elites: int = 24
    plan_iters: int = 3
    plan_repeat: int = 1
    """Each planned action is held for this many imagined steps (shorter search, longer reach)."""
    plan_critic: float = 1.0
    """Weight of the critic's value at the end of a planned sequence (0: reward only)."""
    plan_explore: float = 0.0
    """With ``deterministic=False``: chance of a uniformly random action instead of the plan."""
    train_ac: bool = True
    """Train the imagination actor-critic alongside the world model. With ``act: plan`` and
    ``plan_critic: 0`` nothing that acts reads it, so ``false`` saves about half of each update
    and leaves the agent's behaviour as it is (the checkpoint's actor and critic stay untrained)."""

    def __post_init__(self) -> None:
        if self.act not in ("actor", "plan"):
            from mtsandbox.agents.config import ConfigError

            raise ConfigError(f"{self.SOURCE}: act must be 'actor' or 'plan', not {self.act!r}")



class _Dist:
    def __init__(self, probs: torch.Tensor) -> None:
        self.distribution = torch.distributions.Categorical(probs=probs)


class _PolicyShim:
    """The bits of SB3's ``model.policy`` that evaluation code touches."""

    def __init__(self, agent: ModelBasedAgent) -> None:
        self.agent = agent

    def obs_to_tensor(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        obs = np.asarray(obs)
        vec = obs.ndim == 4
        return (obs if vec else obs[None]), vec

    @torch.no_grad()
    def _feat(self, obs: np.ndarray) -> torch.Tensor:
        obs = np.asarray(obs)
        st = self.agent._get_state(obs.shape[0], None, None)
        post = self.agent._filter(obs, st, sample=False)
        return post.feat()

    def get_distribution(self, obs: Any) -> _Dist:
        feat = self._feat(obs)
        return _Dist(self.agent.actor(feat).softmax(-1))

    @torch.no_grad()
    def predict_values(self, obs: Any) -> torch.Tensor:
        return self.agent.critic(self._feat(obs))


class ModelBasedAgent:
    """World model + actor + critic; see the module docstring."""

    # Set lazily (by _collect / load), declared here for the type checker only.
    _obs: Any
    meta: dict

    def __init__(self, env: str | gym.Env | None = None, *, config: MBConfig | None = None,
                 world_model: WorldModel | None = None, record_dir: str | os.PathLike | None = None,
                 device: str = "auto", log=print) -> None:
        self.config = config or MBConfig()
        if isinstance(env, str):
            self.config.env_id = env
            env = None
        self.env: gym.Env | None = env
        spec = getattr(env, "spec", None)
        if spec is not None:
            self.config.env_id = spec.id
        self.record_dir = Path(record_dir) if record_dir is not None else None
        self.device = torch.device(resolve_device(device))
        self.log = log
        if world_model is None:
            # the envs' action spaces are Discrete (cast for the type checker only)
            n_act = (int(cast(gym.spaces.Discrete, env.action_space).n) if env is not None
                     else 12)
            wm_cfg = WMConfig.from_dict({"n_actions": n_act, **self.config.wm})
            world_model = WorldModel(wm_cfg, device=self.device)
        self.wm = world_model.to(self.device)
        self.wm.device = self.device
        c = self.wm.cfg
        self.n_actions = c.n_actions
        self.actor = mlp(c.feat, self.config.hidden, c.n_actions).to(self.device)
        self.critic = mlp(c.feat, self.config.hidden, 1).to(self.device)
        self.target_critic = mlp(c.feat, self.config.hidden, 1).to(self.device)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.config.actor_lr,
                                          eps=1e-5)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.config.critic_lr,
                                           eps=1e-5)
        self.wm_trainer = WMTrainer(self.wm, lr=self.config.wm_lr)
        self.replay = Replay(seed=self.config.seed)
        self.ret_scale = 1.0
        self.num_timesteps = 0
        self._pretrained = False
        self.internal_state: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.action_space: gym.spaces.Discrete = gym.spaces.Discrete(c.n_actions)
        obs_space = getattr(env, "observation_space", None)
        self.observation_space = (obs_space if isinstance(obs_space, gym.spaces.Box) else
                                  gym.spaces.Box(0, 255, (64, 64, 3), np.uint8))
        self.policy = _PolicyShim(self)
        self.history: list[dict[str, float]] = []
        self.rng = np.random.default_rng(self.config.seed)

    # ------------------------------------------------------------------------- acting
    def reset_state(self) -> None:
        """Forget the internal recurrent state (next ``predict`` starts a new episode)."""
        self.internal_state = None

    def initial_state(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.wm.cfg
        return (np.zeros((n, c.deter), np.float32), np.zeros((n, c.stoch), np.float32),
                np.full(n, -1, np.int64))

    def _get_state(self, n: int, state: Any, episode_start: Any
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if state is None:
            state = self.internal_state
        if state is None or np.asarray(state[0]).shape[0] != n:
            state = self.initial_state(n)
        deter, stoch, prev = (np.array(s, copy=True) for s in state)
        if episode_start is not None:
            es = np.asarray(episode_start, dtype=bool).reshape(-1)
            if es.any():
                init = self.initial_state(n)
                deter[es], stoch[es], prev[es] = init[0][es], init[1][es], init[2][es]
        return deter, stoch, prev

    def _filter(self, obs: np.ndarray, st: tuple, sample: bool) -> State:
        deter, stoch, prev = st
        c = self.wm.cfg
        n = obs.shape[0]
        state = State(torch.as_tensor(deter, device=self.device),
                      torch.as_tensor(stoch, device=self.device),
                      torch.zeros(n, c.n_cat, c.n_cls, device=self.device))
        first = torch.as_tensor(prev < 0, device=self.device)
        embed = self.wm.encoder(self.wm.preprocess(obs))
        post, _ = self.wm.rssm.obs_step(state, self.wm.onehot(prev), embed, first, sample)
        return post

    @staticmethod
    def _as_hwc(obs: np.ndarray) -> np.ndarray:
        if obs.shape[-1] != 3 and obs.shape[-3] == 3:  # channel-first
            obs = np.moveaxis(obs, -3, -1)
        return obs

    @torch.no_grad()
    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, tuple]:
        """Action(s) for ``obs`` ((H, W, 3) or (n, H, W, 3) uint8) and the next recurrent state
        (see the module docstring for how ``state`` / ``episode_start`` are handled)."""
        obs = self._as_hwc(np.asarray(obs))
        single = obs.ndim == 3
        if single:
            obs = obs[None]
        st = self._get_state(obs.shape[0], state, episode_start)
        if self.config.act == "plan":
            post = self._filter(obs, st, sample=False)
            act = self.plan(post)
            if not deterministic and self.config.plan_explore > 0:
                rnd = torch.rand(act.shape, device=self.device) < self.config.plan_explore
                act = torch.where(rnd, torch.randint_like(act, self.n_actions), act)
        else:
            post = self._filter(obs, st, sample=not deterministic)
            logits = self.actor(post.feat())
            if deterministic:
                act = logits.argmax(-1)
            else:
                act = torch.distributions.Categorical(logits=logits).sample()
        act_np = act.cpu().numpy().astype(np.int64)
        new_state = (post.deter.cpu().numpy(), post.stoch.cpu().numpy(), act_np.copy())
        self.internal_state = new_state
        return (act_np[0] if single else act_np), new_state

    @torch.no_grad()
    def plan(self, state: State) -> torch.Tensor:
        """MPC by the cross-entropy method over discrete action sequences: for each row of
        ``state`` (B, ...), sample ``plan_candidates`` sequences of ``plan_horizon`` actions
        from per-step categoricals (uniform at first), imagine them (mode latents), score
        ``sum_t gamma^t cont_<t r_t + plan_critic * gamma^H cont V(s_H)``, refit the
        categoricals to the ``plan_elites`` best, ``plan_iters`` times; return the first action
        of the best sequence seen. -> (B,) int64."""
        cfg = self.config
        B, N, H, A = state.deter.shape[0], cfg.plan_candidates, cfg.plan_horizon, self.n_actions
        rep = max(1, cfg.plan_repeat)
        probs = torch.full((B, H, A), 1.0 / A, device=self.device)
        disc = cfg.gamma ** torch.arange(H * rep, device=self.device, dtype=torch.float32)
        best_score = torch.full((B,), -float("inf"), device=self.device)
        best_first = torch.zeros(B, dtype=torch.long, device=self.device)
        for _ in range(max(1, cfg.plan_iters)):
            seq = torch.distributions.Categorical(probs=probs.unsqueeze(1).expand(B, N, H, A)
                                                  ).sample()            # (B, N, H)
            r, c, last = self._imagine_tree(state, seq, rep)
            alive = torch.cumprod(torch.cat([torch.ones_like(c[:, :1]), c[:, :-1]], 1), 1)
            score = (disc * alive * r).sum(1)
            if cfg.plan_critic:
                v = self.critic(last).squeeze(-1)
                end = cfg.gamma ** (H * rep) * alive[:, -1] * c[:, -1]
                score = score + cfg.plan_critic * end * v
            score = score.reshape(B, N)
            top = score.topk(min(cfg.plan_elites, N), dim=1)
            elite = torch.gather(seq, 1, top.indices.unsqueeze(-1).expand(-1, -1, H))
            counts = F.one_hot(elite, A).float().mean(1)                # (B, H, A)
            probs = 0.9 * counts + 0.1 / A                              # keep some spread
            better = top.values[:, 0] > best_score
            best_score = torch.where(better, top.values[:, 0], best_score)
            best_first = torch.where(better, elite[:, 0, 0], best_first)
        return best_first

    def _imagine_tree(self, state: State, seq: torch.Tensor, rep: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Imagine candidate action sequences ``seq`` (B, N, H) from ``state`` (B, ...), each
        action held ``rep`` steps, with mode latents. Candidates that share a prefix share its
        imagined steps (a search tree: the first action has at most A distinct values, so early
        steps run on a few rows). -> reward and continue (B*N, H*rep), last features (B*N, F);
        the same figures as imagining every candidate on its own, up to float rounding."""
        B, N, H = seq.shape
        A = self.n_actions
        flat = seq.reshape(B * N, H)
        ar = torch.arange(B * N, device=seq.device)
        cur, parent = state, ar // N   # parent: each candidate's row in ``cur``
        feats, rows = [], []           # the unique rows' features, each candidate's row in them
        n_rows = 0
        for d in range(H):
            # a prefix is (its parent prefix, this action): one integer code per candidate
            uniq, inv = torch.unique(parent * A + flat[:, d], return_inverse=True)
            member = torch.empty(len(uniq), dtype=torch.long, device=seq.device)
            member[inv] = ar                                       # any member of each prefix
            st = cur.map(lambda x, i=parent[member]: x[i])
            act = F.one_hot(uniq % A, A).float()
            for _ in range(rep):
                st = self.wm.rssm.img_step(st, act, sample=False)
                feats.append(st.feat())
                rows.append(inv + n_rows)
                n_rows += len(uniq)
            cur, parent = st, inv
        feat = torch.cat(feats, 0)                                 # heads in one batch
        idx = torch.stack(rows, 1)                                 # (B*N, H*rep)
        return self.wm.reward(feat)[idx], self.wm.cont(feat)[idx], feats[-1][parent]

    # ------------------------------------------------------------------------- env
    def _make_env(self) -> gym.Env:
        if self.env is None:
            import mtsandbox.envs  # noqa: F401  (registers the ids)

            env = gym.make(self.config.env_id, **self.config.env_kwargs)
            if self.record_dir is not None:
                from mtsandbox.tools.recording import RecordEpisodes

                env = RecordEpisodes(env, self.record_dir, bodies_each_step=False,
                                     config={"agent": "model_based",
                                             **self.config.to_dict()})
            self.env = env
            self._own_env = True
        return self.env

    def close(self) -> None:
        if self.env is not None and getattr(self, "_own_env", False):
            self.env.close()
            self.env = None

    def add_data(self, data: Any) -> int:
        """Add recorded episodes (dirs, Episode objects, SeqData, ...) to the replay."""
        eps = as_seqdata(data)
        for e in eps:
            self.replay.add(e)
        return len(eps)

    def _collect(self, n_steps: int, random: bool = False) -> dict[str, float]:
        env = self._make_env()
        if not hasattr(self, "_obs") or self._obs is None:
            self._obs, _ = env.reset(seed=int(self.rng.integers(0, 2**31 - 1)))
            self._seg = self._new_segment(self._obs, first=True)
            self._ep_stats = [0.0, 0.0]
            self.reset_state()
        finished: list[tuple[float, ...]] = []
        for _ in range(n_steps):
            if random:
                a = int(self.rng.integers(0, self.n_actions))
                self.internal_state = None
            else:
                a = int(self.predict(self._obs)[0])
            obs, r, term, trunc, info = env.step(a)
            self.num_timesteps += 1
            self._ep_stats[0] += float(r)
            self._ep_stats[1] += float(info.get("hidden_performance", 0.0))
            seg = self._seg
            seg["obs"].append(obs)
            seg["prev_action"].append(a)
            seg["reward"].append(float(r))
            seg["cont"].append(0.0 if term else 1.0)
            if term or trunc:
                self._flush_segment()
                finished.append(tuple(self._ep_stats))
                self._ep_stats = [0.0, 0.0]
                obs, _ = env.reset(seed=int(self.rng.integers(0, 2**31 - 1)))
                self._seg = self._new_segment(obs, first=True)
                self.reset_state()
            self._obs = obs
        # flush the running episode's segment (the next one starts at the current frame)
        if len(self._seg["obs"]) > 1:
            last_a = self._seg["prev_action"][-1]
            self._flush_segment()
            self._seg = self._new_segment(self._obs, first=False, prev_action=last_a)
        out: dict[str, float] = {"episodes": len(finished)}
        if finished:
            out["ep_return"] = float(np.mean([f[0] for f in finished]))
            out["ep_trunks"] = float(np.mean([f[1] for f in finished]))
        return out

    @staticmethod
    def _new_segment(obs: np.ndarray, first: bool, prev_action: int = -1) -> dict[str, Any]:
        return {"obs": [obs], "prev_action": [-1 if first else prev_action], "reward": [0.0],
                "cont": [1.0], "first": first}

    def _flush_segment(self) -> None:
        s = self._seg
        n = len(s["obs"])
        first = np.zeros(n, bool)
        first[0] = bool(s["first"])
        self.replay.add(SeqData(np.asarray(s["obs"], np.uint8),
                                np.asarray(s["prev_action"], np.int64),
                                np.asarray(s["reward"], np.float32),
                                np.asarray(s["cont"], np.float32), first))

    # ------------------------------------------------------------------------- training
    def lambda_returns(self, reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor
                       ) -> torch.Tensor:
        """``reward``/``cont`` (N, H) for steps 1..H, ``value`` (N, H+1) -> returns (N, H)."""
        g, lam = self.config.gamma, self.config.lam
        H = reward.shape[1]
        ret: list[torch.Tensor | None] = [None] * H
        nxt = value[:, H]
        for t in reversed(range(H)):
            nxt = reward[:, t] + g * cont[:, t] * ((1 - lam) * value[:, t + 1] + lam * nxt)
            ret[t] = nxt
        return torch.stack(ret, 1)  # type: ignore[arg-type]

    def train_actor_critic(self, post: State) -> dict[str, float]:
        """One imagination update from posterior states ``post`` (B, T, ...)."""
        cfg = self.config
        flat = post.map(lambda x: x.reshape(-1, *x.shape[2:]).detach())
        n = flat.deter.shape[0]
        if n > cfg.ac_starts:
            idx = torch.randperm(n, device=self.device)[: cfg.ac_starts]
            flat = flat.map(lambda x: x[idx])
        with torch.no_grad():
            feats, acts = [flat.feat()], []
            st = flat
            for _ in range(cfg.horizon):
                a = torch.distributions.Categorical(logits=self.actor(feats[-1])).sample()
                acts.append(a)
                st = self.wm.rssm.img_step(st, F.one_hot(a, self.n_actions).float())
                feats.append(st.feat())
            feat = torch.stack(feats, 1)                     # (N, H+1, F)
            act = torch.stack(acts, 1)                       # (N, H)
            reward = self.wm.reward(feat[:, 1:])
            cont = self.wm.cont(feat[:, 1:])
            tval = self.target_critic(feat).squeeze(-1)
            ret = self.lambda_returns(reward, cont, tval)    # (N, H)
            # weight of step t: product of the continue probabilities before it
            w = torch.cumprod(torch.cat([torch.ones_like(cont[:, :1]), cont[:, :-1]], 1), 1)
            lo, hi = torch.quantile(ret.flatten(), torch.tensor([0.05, 0.95],
                                                               device=self.device))
            self.ret_scale = 0.99 * self.ret_scale + 0.01 * float(hi - lo)
            scale = max(1.0, self.ret_scale)
        # critic
        v = self.critic(feat[:, :-1].detach()).squeeze(-1)
        critic_loss = (w * (v - ret).pow(2)).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), 100.0)
        self.critic_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target_critic.parameters(),
                             strict=True):
                tp.mul_(1 - cfg.target_tau).add_(cfg.target_tau * p)
        # actor (REINFORCE on the imagined trajectories; baseline = critic value)
        logits = self.actor(feat[:, :-1].detach())
        dist = torch.distributions.Categorical(logits=logits)
        with torch.no_grad():
            adv = (ret - self.critic(feat[:, :-1]).squeeze(-1)) / scale
        ent = dist.entropy()
        actor_loss = -(w * (dist.log_prob(act) * adv + cfg.entropy * ent)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), 100.0)
        self.actor_opt.step()
        return {"actor_loss": float(actor_loss.detach()),
                "critic_loss": float(critic_loss.detach()),
                "entropy": float(ent.mean().detach()), "imag_return": float(ret.mean()),
                "imag_reward": float(reward.mean()), "ret_scale": self.ret_scale}

    def train_step(self) -> dict[str, float]:
        batch = self.replay.sample(self.config.batch, self.config.seq_len)
        m, post = self.wm_trainer.update(batch)
        if self.config.train_ac:
            m.update(self.train_actor_critic(post))
        return m

    def _train(self, n: int) -> dict[str, float]:
        acc: dict[str, float] = {}
        for _ in range(n):
            for k, v in self.train_step().items():
                acc[k] = acc.get(k, 0.0) + v / n
        return acc

    def learn(self, total_timesteps: int, prefill: Any = None, log_interval: int = 1,
              time_limit_s: float | None = None) -> ModelBasedAgent:
        """Collect ``total_timesteps`` env steps (counting the random prefill), training after
        each ``collect_steps``. ``prefill``: recorded episodes added to the replay first."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        if prefill is not None:
            self.add_data(prefill)
        target = self.num_timesteps + int(total_timesteps)
        need = max(0, cfg.prefill_steps - self.replay.n_frames)
        if need:
            self._collect(min(need, target - self.num_timesteps), random=True)
        if cfg.pretrain_updates and self.replay.episodes and not self._pretrained:
            self._pretrained = True  # once per agent, also when learn is called in chunks
            m = self._train(cfg.pretrain_updates)
            self._log_row({"phase": "pretrain", **m}, t0)
        it = 0
        while self.num_timesteps < target:
            if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
                self.log(f"mb: time limit reached at {self.num_timesteps} env steps")
                break
            stats = self._collect(min(cfg.collect_steps, target - self.num_timesteps))
            m = self._train(cfg.wm_updates)
            it += 1
            if log_interval and it % log_interval == 0:
                self._log_row({**stats, **m}, t0)
        return self

    def _log_row(self, row: dict[str, Any], t0: float) -> None:
        row = {"env_steps": self.num_timesteps, "wm_steps": self.wm.train_steps,
               "wall_s": round(time.perf_counter() - t0, 1), **row}
        self.history.append(row)
        if self.log is not None:
            keys = ("env_steps", "wm_steps", "episodes", "ep_trunks", "ep_return", "mse_px",
                    "reward", "kl", "imag_return", "entropy", "wall_s")
            self.log("mb: " + " ".join(
                f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                for k in keys if k in row))

    # ------------------------------------------------------------------------- persistence
    def train_config(self) -> dict[str, Any]:
        """This agent as a ``TrainConfig`` mapping (``algo: model_based``, the rest in ``mb``):
        what ``meta.json["config"]`` holds, so evaluation rebuilds the env as for PPO."""
        mb = self.config.to_dict()
        top = {k: mb.pop(k) for k in ("env_id", "env_kwargs", "seed")}
        return {**top, "algo": "model_based", "mb": mb}

    def save(self, path: str | os.PathLike, train_config: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> Path:
        """``path/agent.pt`` (actor, critic, target critic) + ``path/world_model/`` +
        ``path/meta.json`` (written last): ``config`` is the ``TrainConfig`` mapping
        (``train_config``, default :meth:`train_config`), ``mb_config`` the agent's
        :class:`MBConfig`; ``extra`` adds keys (run name, action meanings, env variant)."""
        path = Path(path)
        if path.suffix == ".zip":  # SB3-style file name: use it as a directory name
            path = path.with_suffix("")
        path.mkdir(parents=True, exist_ok=True)
        self.wm.save(path / WM_DIR, env_id=self.config.env_id)
        torch.save({"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                    "target_critic": self.target_critic.state_dict(),
                    "ret_scale": self.ret_scale}, path / AGENT_FILE)
        write_meta(path, {"format": MB_FORMAT, "algo": "model_based",
                          "step": int(self.num_timesteps), "wm_step": int(self.wm.train_steps),
                          "env_id": self.config.env_id, "env_kwargs": self.config.env_kwargs,
                          "config": train_config or self.train_config(),
                          "mb_config": self.config.to_dict(), "wm_config": self.wm.cfg.to_dict(),
                          "action_space": repr(self.action_space)}, extra, name=META_FILE)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | None = None, device: str = "auto",
             **kwargs: Any) -> ModelBasedAgent:
        path = Path(path)
        if path.suffix == ".zip":
            path = path.with_suffix("")
        if path.is_file():
            path = path.parent
        mp = path / META_FILE
        if not mp.exists():
            raise FileNotFoundError(f"not a model-based agent checkpoint (no {META_FILE}): {path}")
        meta = json.loads(mp.read_text())
        if meta.get("format") != MB_FORMAT:
            raise ValueError(f"{mp}: not a {MB_FORMAT} checkpoint")
        wm, _ = load_world_model(path / WM_DIR, device=device)
        mb = meta.get("mb_config") or meta.get("config") or {}  # older ones: config is MBConfig
        agent = cls(env, config=MBConfig.from_dict(mb), world_model=wm,
                    device=device, **kwargs)
        sd = torch.load(path / AGENT_FILE, map_location=agent.device, weights_only=True)
        agent.actor.load_state_dict(sd["actor"])
        agent.critic.load_state_dict(sd["critic"])
        agent.target_critic.load_state_dict(sd["target_critic"])
        agent.ret_scale = float(sd.get("ret_scale", 1.0))
        agent.num_timesteps = int(meta.get("step", 0))
        agent._pretrained = agent.num_timesteps > 0
        agent.meta = meta
        return agent

