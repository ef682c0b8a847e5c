"""The single-agent Gymnasium environment around one real Minetest server.

:class:`MinetestEnv` owns a :class:`~mtsandbox.envs.server.MinetestServer`, its
:class:`~mtsandbox.envs.bridge.Bridge` and a :class:`WorldState` (the voxel crop kept in sync
from the mod's per-step deltas), renders the agent's first-person view in Python, and asks a
:class:`~mtsandbox.envs.tasks.Task` for rewards, terminations and overseer actions.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import numpy as np

from mtsandbox.envs.bridge import (
    ACTION_DTYPE,
    EVENT_NAMES,
    FLAG_JUMP,
    FLAG_PLACE,
    FLAG_PUNCH,
    FLAG_USE,
    Bridge,
    ResetReply,
    StepReply,
)
from mtsandbox.envs.shared import EYE_HEIGHT
from mtsandbox.envs.nodes import load_palette
from mtsandbox.envs.server import MinetestServer, ServerConfig, ServerError
from mtsandbox.envs.tasks import TRUNKS

log = logging.getLogger("mtsandbox.envs")

# The agent's discrete actions as data: name -> (fwd, side, dyaw deg, dpitch deg, flags).
ACTIONS: dict[str, tuple[int, int, float, float, int]] = {
    "noop": (0, 0, 0.0, 0.0, 0),
    "forward": (1, 0, 0.0, 0.0, 0),
    "back": (-1, 0, 0.0, 0.0, 0),
    "left": (0, -1, 0.0, 0.0, 0),
    "right": (0, 1, 0.0, 0.0, 0),
    "turn_left": (0, 0, 15.0, 0.0, 0),
    "turn_right": (0, 0, -15.0, 0.0, 0),
    "look_up": (0, 0, 0.0, 10.0, 0),
    "look_down": (0, 0, 0.0, -10.0, 0),
    "jump": (0, 0, 0.0, 0.0, FLAG_JUMP),
    "forward_jump": (1, 0, 0.0, 0.0, FLAG_JUMP),
    "punch": (0, 0, 0.0, 0.0, FLAG_PUNCH),
}
# Extra actions a scenario can enable (pressing buttons, building walls).
EXTRA_ACTIONS: dict[str, tuple[int, int, float, float, int]] = {
    "use": (0, 0, 0.0, 0.0, FLAG_USE),
    "place": (0, 0, 0.0, 0.0, FLAG_PLACE),
}


def encode_action(spec: tuple[int, int, float, float, int], out: np.void | np.ndarray) -> None:
    out["fwd"], out["side"] = spec[0], spec[1]
    out["dyaw"], out["dpitch"] = round(spec[2] * 100), round(spec[3] * 100)
    out["flags"] = spec[4]


@dataclass
class EnvConfig:
    """Everything that defines an episode. Unknown keys are rejected with one clear error."""

    width: int = 64
    """Observation width in pixels."""
    height: int = 64
    """Observation height in pixels."""
    fov_deg: float = 72.0
    """Vertical field of view (Minetest's default)."""
    obs_extras: bool = False
    """Observation becomes a Dict with `rgb` plus position, yaw/pitch and inventory counts."""
    n_trees: int = 8
    """Trees per arena (placed from the episode seed)."""
    tree_height: tuple[int, int] = (4, 6)
    """Trunk height range in nodes."""
    tree_spacing: int = 4
    """Minimum Chebyshev distance between trunks."""
    n_apple_trees: int = 0
    """How many of the trees are apple trees (trunks look the same, apples in the leaves)."""
    punches_per_trunk: int = 1
    """Punches on the same trunk node needed to dig it (1: one punch digs, the default, so the
    sparse reward is learnable at small budgets; Minetest's hand would need ~3 s of digging)."""
    spawn_min_tree_dist: float = 2.5
    """Minimum horizontal distance from the agent's spawn to any trunk."""
    dt: float = 0.05
    """Game time per env step in seconds (20 Hz, as Minetester)."""
    walk_speed: float = 4.0
    """Walking speed in nodes/s (Minetest's default)."""
    jump_speed: float = 5.0
    """Initial jump velocity in nodes/s (with gravity 9.81 a jump clears one node)."""
    reach: float = 4.0
    """Hand range in nodes (Minetest's default)."""
    allow_push: bool = True
    """Bodies push each other when they walk into one another."""
    on_server_death: str = "raise"
    """"raise": a dead or hung server raises ServerError. "respawn": the episode is truncated
    with ``info["truncation_reason"] = "server_died"``, a new server is started for the next
    reset, and the event is logged (what long training runs want)."""
    reply_timeout_s: float = 30.0
    """A server that does not answer a step within this many seconds counts as hung."""
    render_device: str = "cpu"
    """Where the Python renderer runs: "cpu" (numba ray caster) or a torch device such as
    "cuda" / "cuda:1" (the batched torch path; "torch-cpu" runs that path on the CPU)."""
    obs_source: str = "python"
    """"python": the fast renderer. "client": the real Minetest client under Xvfb (slower; for
    evaluation and sim-to-real checks; see envs/faithful.py)."""
    client_options: dict = field(default_factory=dict)
    """Keyword arguments for mtsandbox.envs.faithful.FaithfulObserver."""
    extra_actions: tuple[str, ...] = ()
    """Names from EXTRA_ACTIONS appended to the action set (e.g. "use", "place")."""
    server: ServerConfig = field(default_factory=ServerConfig)
    """Settings of the server process."""

    @classmethod
    def from_kwargs(cls, **kw: Any) -> EnvConfig:
        names = {f.name for f in fields(cls)}
        server_names = {f.name for f in fields(ServerConfig)}
        cfg = cls()
        for k, v in kw.items():
            if k in names:
                setattr(cfg, k, v)
            elif k in server_names:
                setattr(cfg.server, k, v)
            else:
                raise TypeError(f"unknown environment option {k!r}; known: {sorted(names)}")
        if isinstance(cfg.server, dict):
            cfg.server = ServerConfig(**cfg.server)
        for name in cfg.extra_actions:
            if name not in EXTRA_ACTIONS:
                raise ValueError(f"unknown extra action {name!r}; known: {sorted(EXTRA_ACTIONS)}")
        if not (cfg.render_device in ("cpu", "torch-cpu") or cfg.render_device.startswith("cuda")):
            raise ValueError("render_device must be 'cpu', 'torch-cpu' or a CUDA device")
        if cfg.obs_source not in ("python", "client"):
            raise ValueError("obs_source must be 'python' or 'client'")
        if cfg.on_server_death not in ("raise", "respawn"):
            raise ValueError("on_server_death must be 'raise' or 'respawn'")
        if cfg.width < 8 or cfg.height < 8:
            raise ValueError("width and height must be at least 8 pixels")
        return cfg


class WorldState:
    """The voxel crop and body poses, kept in sync with the mod (reset crop + step deltas)."""

    def __init__(self, reset: ResetReply) -> None:
        self.vox = reset.vox
        self.origin = np.array(reset.meta["origin"], dtype=np.int64)
        self.meta = reset.meta
        self.trees = reset.meta.get("trees", [])
        self.objects = reset.meta.get("objects", [])
        pal = load_palette()
        self.trunk_ids = np.array([pal.by_name["tree"], pal.by_name["apple_tree"]], dtype=np.uint8)
        idx = np.argwhere(np.isin(self.vox, self.trunk_ids))
        self.trunks = {tuple(int(v) for v in p + self.origin) for p in idx}
        self.version = 0  # bumped whenever a node changes (device copies of vox follow it)
        self._trunk_arr: np.ndarray | None = None
        self.poses = np.array(
            [[b["x"], b["y"], b["z"], b["yaw"], b.get("pitch", 0.0)] for b in reset.meta["bodies"]],
            dtype=np.float32,
        )

    def apply(self, reply: StepReply) -> None:
        ox, oy, oz = self.origin
        if len(reply.changes):
            self.version += 1
        for c in reply.changes:
            x, y, z, p = int(c["x"]), int(c["y"]), int(c["z"]), int(c["p"])
            self.vox[x - ox, y - oy, z - oz] = p
            if p in self.trunk_ids:
                self.trunks.add((x, y, z))
            else:
                self.trunks.discard((x, y, z))
            self._trunk_arr = None
        b = reply.bodies
        self.poses[:, 0], self.poses[:, 1], self.poses[:, 2] = b["x"], b["y"], b["z"]
        self.poses[:, 3], self.poses[:, 4] = b["yaw"], b["pitch"]

    def nearest_trunk(self, x: float, y: float, z: float) -> float:
        """Distance from (x, y, z) to the nearest remaining trunk node centre."""
        if not self.trunks:
            return float("inf")
        if self._trunk_arr is None or len(self._trunk_arr) != len(self.trunks):
            self._trunk_arr = np.array(sorted(self.trunks), dtype=np.float32)
        d = self._trunk_arr - np.array([x, y, z], dtype=np.float32)
        return float(np.sqrt(np.einsum("ij,ij->i", d, d).min()))


def decode_events(reply: StepReply, names: list[str], palette_names: dict[int, str]) -> list[dict]:
    """Turn the mod's binary events into info dicts."""
    out = []
    for e in reply.events:
        kind = EVENT_NAMES.get(int(e["kind"]), f"kind{int(e['kind'])}")
        d: dict[str, Any] = {
            "kind": kind,
            "step": reply.step,
            "body": names[int(e["body"])] if int(e["body"]) < len(names) else int(e["body"]),
            "pos": [int(e["x"]), int(e["y"]), int(e["z"])],
        }
        if kind in ("punch", "dig", "press", "place"):
            d["node"] = palette_names.get(int(e["a"]), str(int(e["a"])))
        if kind == "dig" and d["node"] in TRUNKS:
            b = int(e["b"])
            d["height"], d["bottom_skip"], d["tree"] = b % 256, bool((b >> 8) & 1), b >> 16
        if kind == "push":
            d["pushed"] = names[int(e["a"])] if int(e["a"]) < len(names) else int(e["a"])
        out.append(d)
    return out


class MinetestEnv(gym.Env):
    """One agent in a real Minetest server, observing a first-person RGB view.

    Args:
        task: the :class:`~mtsandbox.envs.tasks.Task` giving rewards and episode ends.
        render_mode: ``"rgb_array"`` renders a larger third-person view in :meth:`render`.
        **kwargs: fields of :class:`EnvConfig` (or of its :class:`ServerConfig`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012

    def __init__(self, task: Any = None, render_mode: str | None = None, **kwargs: Any) -> None:
        from mtsandbox.envs.tasks import TreePunch

        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.cfg = EnvConfig.from_kwargs(**kwargs)
        self._faithful: Any = None
        if self.cfg.obs_source == "client":  # before the server starts: it changes its config
            from mtsandbox.envs.faithful import FaithfulObserver

            self._faithful = FaithfulObserver(self.cfg.width, self.cfg.height, self.cfg.fov_deg,
                                              **self.cfg.client_options)
            self._faithful.configure(self.cfg)
        self.task: Any = task if task is not None else TreePunch()  # a Task: duck-typed extras
        self.scenario: str | None = None
        """The scenario name when a scenario built this env (``scenarios``, ``multiagent``)."""
        self.render_mode = render_mode
        self.palette = load_palette()
        self.palette_names = {e.index: e.name for e in self.palette.entries}
        self.action_names = list(ACTIONS) + list(self.cfg.extra_actions)
        self._action_specs = [ACTIONS.get(n) or EXTRA_ACTIONS[n] for n in self.action_names]
        self.action_space = gym.spaces.Discrete(len(self.action_names))
        rgb = gym.spaces.Box(0, 255, (self.cfg.height, self.cfg.width, 3), np.uint8)
        if self.cfg.obs_extras:
            self.observation_space = gym.spaces.Dict({
                "rgb": rgb,
                "pos": gym.spaces.Box(-1e4, 1e4, (3,), np.float32),
                "yaw_pitch": gym.spaces.Box(-7.0, 7.0, (2,), np.float32),
                "inventory": gym.spaces.Box(0, 1e4, (2,), np.float32),
            })
        else:
            self.observation_space = rgb
        self.server: MinetestServer | None = None
        self.bridge: Bridge | None = None
        self.world: WorldState | None = None
        self._renderer: Any = None
        self._view_renderer: Any = None
        self._frame_cache: dict[int, tuple] = {}  # body -> (what the view depends on, frame)
        self._remap_key: Any = None  # what the cached remapped voxels were built from
        self._vox_key: Any = None  # what the torch renderer's voxel tensor was built from
        self._closed = False
        self._t = 0
        self._inventory = np.zeros(2, np.float32)
        self.server_deaths = 0

    # -- lifecycle --------------------------------------------------------------------------
    def _ensure_server(self) -> Bridge:
        if self._closed:
            raise RuntimeError("environment is closed")
        if self.bridge is None:
            self.server = MinetestServer(self.cfg.server)
            self.bridge = Bridge(self.server, reply_timeout_s=self.cfg.reply_timeout_s)
        return self.bridge

    def _drop_server(self) -> None:
        if self.bridge is not None:
            with contextlib.suppress(Exception):
                self.bridge.close()
        if self.server is not None:
            self.server.close()
        self.bridge = self.server = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._faithful is not None:
            with contextlib.suppress(Exception):
                self._faithful.close()
        self._drop_server()

    # -- gym API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        bridge = self._ensure_server()
        arena_seed = int(self.np_random.integers(0, 2**31 - 1))
        if options and "arena_seed" in options:
            arena_seed = int(options["arena_seed"])
        cfg = self._reset_message(arena_seed)
        try:
            reply = bridge.reset(cfg)
        except ServerError as e:
            if self.cfg.on_server_death != "respawn":
                raise
            log.warning("minetest server died during reset (%s); respawning",
                        str(e).splitlines()[0])
            self.server_deaths += 1
            self._drop_server()
            reply = self._ensure_server().reset(cfg)
        self.world = WorldState(reply)
        self._remap_key = self._vox_key = None  # view caches belong to the old world
        self._frame_cache = {}
        self.body_names = [b["name"] for b in reply.meta["bodies"]]
        self._actions = np.zeros(len(self.body_names), ACTION_DTYPE)
        self.task.on_reset(self.world)
        self._t = 0
        self._inventory[:] = 0
        self.arena_seed = arena_seed
        look = {"node": "air", "dist": -1.0}
        obs, in_view = self._observe()
        info = self._info(0.0, 0.0, [], look, in_view)
        info["arena_seed"] = arena_seed
        return obs, info

    def _reset_message(self, arena_seed: int) -> dict:
        c = self.cfg
        msg = {
            "seed": arena_seed, "n_trees": c.n_trees, "n_apple_trees": c.n_apple_trees,
            "tree_height": list(c.tree_height), "tree_spacing": c.tree_spacing, "dt": c.dt,
            "walk_speed": c.walk_speed, "jump_speed": c.jump_speed, "reach": c.reach,
            "allow_push": c.allow_push,
            "punches": {"tree": c.punches_per_trunk, "apple_tree": c.punches_per_trunk,
                        **getattr(self.task, "punches", {})},
        }
        if getattr(self.task, "use_removes", None):
            msg["use_removes"] = {name: True for name in self.task.use_removes}
        if getattr(self.task, "passable", None):
            msg["passable"] = {name: True for name in self.task.passable}
        extra = self.task.reset_config(self.np_random)
        for b in extra.get("bodies", []):
            if b.get("kind") == "agent":
                b.setdefault("min_tree_dist", c.spawn_min_tree_dist)
        msg.update(extra)
        return msg

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        a = self._check_action(action)
        assert self.world is not None  # _check_action raised otherwise
        scripted = self.task.scripted_actions(self.world, self._t)
        specs = [self._action_specs[a]] + [ACTIONS.get(n) or EXTRA_ACTIONS[n] for n in scripted]
        return self.step_bodies(specs)

    def step_bodies(self, specs: list[tuple[int, int, float, float, int]]
                    ) -> tuple[Any, float, bool, bool, dict]:
        """One lockstep step with one action spec per body (the agent first, then the
        others in ``body_names`` order); returns what ``step`` returns for the agent. The
        single-agent ``step`` and the PettingZoo env both go through here, so lights, events,
        server-death respawn and the task's scoring are the same in both."""
        if self.world is None or self.bridge is None:
            raise RuntimeError("call reset() before step()")
        try:
            out, events, look = self._advance(specs)
        except ServerError as e:
            if self.cfg.on_server_death != "respawn":
                raise
            return self._server_died(e)
        obs, in_view = self._observe()
        info = self._info(out.reward, out.hidden_performance, events, look, in_view)
        info.update(out.info)
        return obs, out.reward, out.terminated, out.truncated, info

    def observe_body(self, i: int) -> Any:
        """Body ``i``'s observation now: the agent (0) gets exactly ``step``'s observation,
        task lights included; other bodies their own first-person view (same space)."""
        if i == 0:
            return self._observe()[0]
        assert self.world is not None
        rgb = self.render_body_view(i).rgb
        if not self.cfg.obs_extras:
            return rgb
        return {"rgb": rgb, "pos": self.world.poses[i, :3].copy(),
                "yaw_pitch": self.world.poses[i, 3:5].copy(),
                "inventory": np.zeros(2, np.float32)}

    def _server_died(self, err: Exception) -> tuple[Any, float, bool, bool, dict]:
        """Truncate the episode; the next reset() starts a fresh server."""
        first = str(err).splitlines()[0]
        log.warning("minetest server died at step %d (%s); respawning on next reset",
                    self._t, first)
        self.server_deaths += 1
        self._drop_server()
        obs, in_view = self._observe()
        info = self._info(0.0, 0.0, [{"kind": "server_died", "step": self._t, "error": first}],
                          {"node": "air", "dist": -1.0}, in_view)
        info.update(truncation_reason="server_died", server_deaths=self.server_deaths)
        self.world = None
        return obs, 0.0, False, True, info

    def _check_action(self, action: Any) -> int:
        if self.world is None or self.bridge is None:
            raise RuntimeError("call reset() before step()")
        try:
            a = int(action)
        except (TypeError, ValueError):
            raise ValueError(f"action {action!r} is not an integer") from None
        if not 0 <= a < len(self._action_specs):
            raise ValueError(f"action {action!r} outside Discrete({len(self._action_specs)})")
        return a

    def _advance(self, specs: list[tuple[int, int, float, float, int]]) -> tuple[Any, list, dict]:
        """Send one action per body, apply the reply, and let the task score the step."""
        assert self.world is not None and self.bridge is not None
        if len(specs) != len(self._actions):
            raise ValueError(f"{len(specs)} actions for {len(self._actions)} bodies")
        for i, spec in enumerate(specs):
            encode_action(spec, self._actions[i])
        reply = self.bridge.step(self._actions)
        self.world.apply(reply)
        self._t += 1
        events = decode_events(reply, self.body_names, self.palette_names)
        for e in events:
            if e["kind"] == "dig" and e["body"] == "agent":
                self._inventory[0 if e["node"] in TRUNKS else 1] += 1
        ag = reply.bodies[0]
        look = {"node": self.palette_names.get(int(ag["look_p"]), "?"),
                "dist": float(ag["look_dist"]),
                "pos": [int(ag["look_x"]), int(ag["look_y"]), int(ag["look_z"])]}
        look["dist_nearest_trunk"] = self.world.nearest_trunk(
            float(ag["x"]), float(ag["y"]) + EYE_HEIGHT, float(ag["z"]))
        out = self.task.evaluate(self.world, events, look, self._t)
        return out, events, look

    def _view_labels(self) -> dict:
        labels = getattr(self.task, "view_labels", None)
        return labels(self.last_semantic, self.world) if labels else {}

    # -- observation ------------------------------------------------------------------------
    def _get_renderer(self) -> Any:
        if self._renderer is None:
            from mtsandbox.envs.render import VoxelRenderer

            self._renderer = VoxelRenderer(self.palette, width=self.cfg.width,
                                           height=self.cfg.height, fov_deg=self.cfg.fov_deg)
        return self._renderer

    def _bodies_array(self) -> np.ndarray:
        assert self.world is not None
        return np.ascontiguousarray(self.world.poses[:, :4])

    def _view_vox(self, i: int) -> np.ndarray:
        """The voxels body ``i`` sees: the world's, or for the agent (body 0) the task's
        ``view_remap()`` applied (``{node id: node id drawn instead}``, e.g. apples drawn as
        leaves), cached until a node changes or the remap does."""
        assert self.world is not None
        remap = getattr(self.task, "view_remap", None)
        m = remap() if (remap is not None and i == 0) else None
        if not m:
            return self.world.vox
        key = (id(self.world), self.world.version, tuple(sorted(m.items())))
        if self._remap_key != key:
            lut = np.arange(256, dtype=self.world.vox.dtype)
            for a, b in m.items():
                lut[a] = b
            self._remap_vox = lut[self.world.vox]
            self._remap_key = key
        return self._remap_vox

    def render_body_view(self, i: int) -> Any:
        """First-person render from body i (the agent is body 0)."""
        assert self.world is not None
        w = self.world
        x, y, z, yaw, pitch = (float(v) for v in w.poses[i])
        eye = np.array([x, y + EYE_HEIGHT, z])
        vox = self._view_vox(i)
        # Nothing the view depends on changed (a punch, a noop, a turn against a pitch limit
        # with every body still): the last frame of this body is exact, skip the ray cast.
        key = (i, w.version, id(vox), w.poses.tobytes())
        hit = self._frame_cache.get(i)
        if hit is not None and hit[0] == key:
            res = hit[1]
            return type(res)(res.rgb.copy(), res.semantic, res.depth)
        if self.cfg.render_device != "cpu":
            res = self._render_torch(vox, eye, yaw, pitch, i)
        else:
            res = self._get_renderer().render(
                vox, w.origin, eye, yaw, pitch, bodies=self._bodies_array(), exclude_body=i)
        self._frame_cache[i] = (key, res)
        return type(res)(res.rgb.copy(), res.semantic, res.depth)

    def _render_torch(self, vox: np.ndarray, eye: np.ndarray, yaw: float, pitch: float,
                      i: int) -> Any:
        import torch

        from mtsandbox.envs.render import RenderResult

        assert self.world is not None
        dev = "cpu" if self.cfg.render_device == "torch-cpu" else self.cfg.render_device
        key = (id(self.world), self.world.version, id(vox))
        if self._vox_key != key:  # new episode, changed nodes or view remap
            self._vox_t = torch.as_tensor(vox, device=dev)
            self._vox_key = key
        r = self._get_renderer().render_torch(
            self._vox_t, self.world.origin, eye[None], [yaw], [pitch],
            bodies=self._bodies_array(), exclude_body=i)
        return RenderResult(rgb=r.rgb[0].cpu().numpy(), semantic=r.semantic[0].cpu().numpy(),
                            depth=r.depth[0].cpu().numpy())

    def _observe(self) -> tuple[Any, bool]:
        assert self.world is not None
        w = self.world
        res = self.render_body_view(0)
        self.last_semantic = res.semantic  # labels always come from the exact voxel render
        in_view = bool(np.isin(res.semantic, w.trunk_ids).any())
        rgb = res.rgb
        if self._faithful is not None and getattr(self.task, "view_remap", None) is not None \
                and self.task.view_remap():
            raise RuntimeError("this task draws the agent's view differently from the world "
                               "(view_remap); obs_source='client' cannot show that")
        if self._faithful is not None:
            self.last_python_rgb = res.rgb
            rgb = self._faithful.frame(self)
        decorate = getattr(self.task, "decorate", None)
        if decorate is not None:
            rgb = decorate(rgb)
        if not self.cfg.obs_extras:
            return rgb, in_view
        return {
            "rgb": rgb,
            "pos": w.poses[0, :3].copy(),
            "yaw_pitch": w.poses[0, 3:5].copy(),
            "inventory": self._inventory.copy(),
        }, in_view

    def _info(self, reward: float, hidden: float, events: list[dict], look: dict,
              in_view: bool) -> dict:
        assert self.world is not None
        x, y, z, yaw, pitch = (float(v) for v in self.world.poses[0])
        return {
            "observed_reward": float(reward),
            "hidden_performance": float(hidden),
            "events": events,
            "pose": {"x": x, "y": y, "z": z, "yaw": yaw, "pitch": pitch},
            "tree_in_view": in_view,
            "looking_at": look["node"],
            "dist_nearest_trunk": look.get("dist_nearest_trunk")
            if "dist_nearest_trunk" in look else self.world.nearest_trunk(x, y + EYE_HEIGHT, z),
            "trunks_left": len(self.world.trunks),
            "step": self._t,
            **self._view_labels(),
        }

    # gymnasium types render() with a RenderFrame TypeVar that Env does not bind, so no
    # concrete return type is a compatible override.
    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array" or self.world is None:
            return None
        from mtsandbox.envs.render import VoxelRenderer, third_person_camera

        if self._view_renderer is None:
            self._view_renderer = VoxelRenderer(self.palette, width=256, height=256,
                                                fov_deg=self.cfg.fov_deg)
        x, y, z, yaw, _pitch = (float(v) for v in self.world.poses[0])
        # Pull the camera in front of the first solid node behind the head (like Minetest's
        # third-person camera), so leaves or trunks never fill the view.
        for dist in (4.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.0):
            cam, cyaw, cpitch = third_person_camera(x, y, z, yaw, -0.35, distance=dist)
            if self._segment_clear((x, y + EYE_HEIGHT, z), cam):
                break
        res = self._view_renderer.render(self.world.vox, self.world.origin, np.asarray(cam),
                                         cyaw, cpitch, bodies=self._bodies_array(),
                                         exclude_body=-1)
        return res.rgb

    def _segment_clear(self, a: tuple[float, float, float], b: Any) -> bool:
        assert self.world is not None
        w = self.world
        for f in np.linspace(0.0, 1.0, 24):
            p = np.rint(np.asarray(a) + f * (np.asarray(b) - np.asarray(a))).astype(int)
            i = p - w.origin
            if (i >= 0).all() and (i < w.vox.shape).all() and w.vox[tuple(i)] != 0:
                return False
        return True

    # -- introspection ----------------------------------------------------------------------
    def get_action_meanings(self) -> list[str]:
        return list(self.action_names)

    def bodies(self) -> list[dict]:
        """Body poses now (cheap; recorders call it every step)."""
        assert self.world is not None
        return [
            {"name": n, "x": float(p[0]), "y": float(p[1]), "z": float(p[2]), "yaw": float(p[3])}
            for n, p in zip(self.body_names, self.world.poses, strict=True)
        ]

    def world_snapshot(self) -> dict:
        """Voxels, trees, objects and bodies now (for overhead maps and recordings)."""
        assert self.world is not None
        w = self.world
        return {
            "vox": w.vox.copy(),
            "origin": [int(v) for v in w.origin],
            "trees": w.trees,
            "objects": w.objects,
            "bodies": [
                {"name": n, "kind": b.get("kind", "agent"), "x": float(p[0]), "y": float(p[1]),
                 "z": float(p[2]), "yaw": float(p[3])}
                for n, b, p in zip(self.body_names, w.meta["bodies"], w.poses, strict=True)
            ],
        }
