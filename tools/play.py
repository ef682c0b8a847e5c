"""Human play: a person plays a task with the real Minetest client; episodes are recorded.

The env runs with ``sync_every_step=True`` (the client sees every step) at real time (20 Hz:
each step starts 50 ms after the previous one). A client joined as ``player`` controls the agent
body, one joined as ``overseer`` the first overseer body (``envs/mod/mtsandbox/play.lua``
attaches the player to that body's eye and publishes its controls and look every engine step,
see docs/protocol.md, "Human controls side channel"). Each step the human's controls are mapped
to one of the env's discrete actions (:func:`human_action`), the env is stepped with it, and
:class:`~mtsandbox.tools.recording.RecordEpisodes` writes the episode in the usual recording
format, with the raw controls in every step line (key ``human``) and ``meta.human_play``.

Mapping (one discrete action per 50 ms step; the turn/look sizes come from the env's ACTIONS):

* look: the body turns toward the player's look. ``turn_left``/``turn_right`` (15 deg) when the
  yaw differs by more than half a turn step (7.5 deg), else ``look_up``/``look_down`` (10 deg)
  when the pitch differs by more than half a look step (5 deg).
* keys: left mouse (dig) -> ``punch``; right mouse (place) -> ``use`` (press a button, switch or
  lever), sneak + right mouse -> ``place`` (a block), each only where the env has that action;
  W + jump -> ``forward_jump``; jump -> ``jump``; W -> ``forward``; S -> ``back``; A -> ``left``;
  D -> ``right`` (first match wins; diagonals are not in the action set).
* combining: punch/use/place wait until the look is aligned (they act on what the body looks
  at); a movement key alternates step by step with the turning, so walking while panning keeps
  going at half speed; nothing pressed and aligned -> ``noop``.
* presses shorter than a step are latched by the mod and count once.

When the human plays the overseer, the agent is driven by ``agent_policy`` (``noop``,
``random`` or ``chopper``: the scripted tree chopper), the other overseers stay scripted, and
the step line's ``action`` is the agent's; the human's action is in ``human.action``.

Use :class:`HumanPlay` (``mtsandbox play`` is its command line)::

    with HumanPlay(PlayConfig(env_id="MinetestSandbox/RewardButton-v0", out="demos/")) as p:
        print(p.connect_line())   # (after p.start())
        p.run()
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONTROLS_FILE = "mtsandbox_play.json"
KEYS = ("up", "down", "left", "right", "jump", "sneak", "aux1", "dig", "place")
ROLES = {"agent": "player", "overseer": "overseer"}  # role -> client name
LOOK_ACTIONS = ("turn_left", "turn_right", "look_up", "look_down")
POINTING_ACTIONS = ("punch", "use", "place")


class PlayError(RuntimeError):
    """Human play could not start or go on (no such body, the human never joined...)."""


# ------------------------------------------------------------------------------ controls
@dataclass
class HumanControls:
    """One controlling player's state as published by play.lua."""

    name: str
    body: int
    attached: bool
    keys: dict[str, bool]
    yaw: float  # radians, body convention (counter-clockwise from +Z)
    pitch: float  # radians, > 0 looks up
    seq: int = 0
    step: int = 0

    def pressed(self) -> list[str]:
        return [k for k in KEYS if self.keys.get(k)]

    def record(self) -> dict:
        return {"keys": self.pressed(), "yaw": round(self.yaw, 4), "pitch": round(self.pitch, 4),
                "seq": self.seq}


def read_controls(path: str | Path) -> dict[str, HumanControls]:
    """Parse the controls file play.lua writes (atomically); {} when missing or unreadable."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, p in (d.get("players") or {}).items():  # an empty Lua table is JSON null
        out[name] = HumanControls(
            name=name, body=int(p.get("body", -1)), attached=bool(p.get("attached")),
            keys={k: bool((p.get("controls") or {}).get(k)) for k in KEYS},
            yaw=float(p.get("yaw", 0.0)), pitch=float(p.get("pitch", 0.0)),
            seq=int(d.get("seq") or 0), step=int(d.get("step") or 0))
    return out


def _wrap(a: float) -> float:
    """Angle to (-pi, pi]."""
    return math.pi - (math.pi - a) % (2 * math.pi)


def human_action(c: HumanControls | None, body_yaw: float, body_pitch: float,
                 names: list[str], last: str | None = None, turn_deg: float = 15.0,
                 look_deg: float = 10.0) -> str:
    """Map a human's controls and look to one action name of ``names`` (see module doc)."""
    if c is None:
        return "noop"
    look = None
    dyaw = _wrap(c.yaw - body_yaw)
    dpitch = c.pitch - body_pitch
    if abs(dyaw) > math.radians(turn_deg) / 2:
        look = "turn_left" if dyaw > 0 else "turn_right"
    elif abs(dpitch) > math.radians(look_deg) / 2:
        look = "look_up" if dpitch > 0 else "look_down"
    k = c.keys
    key = None
    if k.get("dig") and "punch" in names:
        key = "punch"
    elif k.get("place") and ("use" in names or "place" in names):
        key = "place" if (k.get("sneak") and "place" in names) or "use" not in names else "use"
    elif k.get("up") and k.get("jump"):
        key = "forward_jump"
    elif k.get("jump"):
        key = "jump"
    elif k.get("up"):
        key = "forward"
    elif k.get("down"):
        key = "back"
    elif k.get("left"):
        key = "left"
    elif k.get("right"):
        key = "right"
    if look and key:
        if key in POINTING_ACTIONS:
            return look
        return key if last in LOOK_ACTIONS else look
    return look or key or "noop"


# ------------------------------------------------------------------------------ session
@dataclass
class PlayConfig:
    env_id: str = "MinetestSandbox/TreePunch-v0"
    role: str = "agent"
    """"agent" (client name ``player``) or "overseer" (client name ``overseer``)."""
    out: str = "demos"
    """Recording root (RecordEpisodes: ep_NNNNNN directories, numbering continues)."""
    episodes: int = 1
    seed: int | None = None
    """Seed of the first reset (later episodes continue its random stream)."""
    max_steps: int | None = None
    """Episode length (default: the id's, 500 steps = 25 s)."""
    hz: float = 20.0
    """Steps per second of wall-clock time (20: real time for dt = 0.05)."""
    agent_policy: str = "noop"
    """When the human plays the overseer: "noop", "random" or a name in ``agent_factories``."""
    agent_factories: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    """More agent policies by name: ``factory(env.unwrapped)`` gives an object whose ``act()``
    returns the agent's action index (the CLI adds ``"chopper"``: the scripted
    ``TreeChopper`` of ``mtsandbox.agents.scripted``; tools do not import agents)."""
    run_client: bool = False
    """Start the real client (joined under the role's name) ourselves."""
    client_xvfb: bool = False
    """With run_client: on a private Xvfb (tests) instead of $DISPLAY."""
    client_size: tuple[int, int] = (800, 600)
    join_timeout_s: float | None = 600.0
    """How long to wait for the human to join (None: forever)."""
    start_delay_s: float = 2.0
    """Pause after the human joined before the first step (the client loads the world)."""
    between_episodes_s: float = 1.0
    away_timeout_s: float | None = 120.0
    """The episode pauses while the human is away (left, or not attached); after this long it
    ends (the episode is closed mid-way, end_reason "closed")."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra gym.make options (EnvConfig fields)."""
    print_fn: Callable[[str], None] | None = print


class HumanPlay:
    """Run episodes driven by a human in the real client and record them.

    ``start()`` makes the env (and the first reset, which starts the server) and, with
    ``run_client``, the client; ``run()`` plays ``episodes`` episodes; ``stop()`` (any thread)
    ends the current episode at the next step, keeping what was recorded; ``close()`` closes
    everything (an unfinished episode is closed with end_reason "closed" and
    ``meta.human_play.interrupted = true``). ``joined`` is an Event set when the human controls
    the body; ``steps`` counts env steps taken; ``episode_paths`` lists the recordings.
    """

    def __init__(self, config: PlayConfig) -> None:
        if config.role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {config.role!r}")
        known = ("noop", "random", *config.agent_factories)
        if config.agent_policy not in known:
            raise ValueError(f"agent_policy must be one of {', '.join(known)}, "
                             f"got {config.agent_policy!r}")
        self.cfg = config
        self.name = ROLES[config.role]
        self.env: Any = None
        self.client: Any = None
        self.joined = threading.Event()
        self.steps = 0
        self.episode_paths: list[Path] = []
        self.action_counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._overseer_action: str | None = None
        self._closed = False

    # -- set-up -------------------------------------------------------------------------
    def _say(self, msg: str) -> None:
        if self.cfg.print_fn is not None:
            self.cfg.print_fn(msg)

    def start(self) -> None:
        import gymnasium as gym

        import mtsandbox.envs  # noqa: F401  (registers the ids)
        from mtsandbox.tools.recording import RecordEpisodes

        c = self.cfg
        kw: dict[str, Any] = dict(c.env_kwargs)
        kw.update(sync_every_step=True, yield_ms=5, label=f"{c.env_id} (human play)")
        # play.lua controls the role's body only on servers that name it.
        kw["extra_conf"] = {**dict(kw.get("extra_conf") or {}), "mtsandbox_play_names": self.name}
        if c.max_steps is not None:
            kw["max_episode_steps"] = int(c.max_steps)
        base = gym.make(c.env_id, **kw)
        self.env = RecordEpisodes(base, c.out)
        u = self.env.unwrapped
        self.action_names: list[str] = u.get_action_meanings()
        self._reset(c.seed)
        if c.role == "overseer":
            kinds = [b.get("kind") for b in u.world.meta["bodies"]]
            if "overseer" not in kinds:
                raise PlayError(f"{c.env_id} has no overseer body to play (use --as agent)")
            self._patch_overseer(u)
        if c.agent_policy in c.agent_factories and c.role == "overseer":
            self._agent = c.agent_factories[c.agent_policy](u)
        self._rng = np.random.default_rng(c.seed)
        if c.run_client:
            self._start_client()

    def _patch_overseer(self, u: Any) -> None:
        """The human's action replaces the first overseer's scripted one."""
        task = u.task
        orig = task.scripted_actions

        def scripted_actions(world: Any, step: int) -> list[str]:
            acts = list(orig(world, step))
            if acts and self._overseer_action is not None:
                acts[0] = self._overseer_action
            return acts

        task.scripted_actions = scripted_actions

    def _start_client(self) -> None:
        from mtsandbox.envs.client import ClientConfig, MinetestClient

        srv = self.env.unwrapped.server
        w, h = self.cfg.client_size
        cfg = ClientConfig(width=w, height=h, xvfb=self.cfg.client_xvfb, viewing_range=100,
                           match_renderer_textures=False,
                           extra_conf={"smooth_lighting": "true", "leaves_style": "fancy"}
                           if not self.cfg.client_xvfb else {})
        cmd = srv.connect_command(self.name)
        self.client = MinetestClient(cmd[cmd.index("--address") + 1], srv.port, self.name,
                                     srv.password, cfg)

    @property
    def server(self) -> Any:
        return self.env.unwrapped.server if self.env is not None else None

    def connect_command(self) -> list[str]:
        return self.server.connect_command(self.name)

    def connect_line(self) -> str:
        return shlex.join(self.connect_command())

    @property
    def controls_path(self) -> Path:
        return Path(self.server.run_dir) / "world" / CONTROLS_FILE

    def controls(self) -> HumanControls | None:
        """The controlling human's state now (None while not joined)."""
        return read_controls(self.controls_path).get(self.name)

    # -- running ------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def _reset(self, seed: int | None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed)
        w = self.env.writer
        if w is not None:
            w.meta["human_play"] = {
                "role": self.cfg.role, "client_name": self.name, "hz": self.cfg.hz,
                "agent_policy": self.cfg.agent_policy if self.cfg.role == "overseer" else None,
                # An id of the key/look mapping, kept as recorded since v1 (the module moved).
                "mapping": "mtsandbox.envs.play.human_action v1", "interrupted": False}
            with contextlib.suppress(Exception):
                w._write_meta()
            self.episode_paths.append(Path(w.path))
        return obs, info

    def wait_for_human(self, timeout_s: float | None = None) -> HumanControls:
        """Block until the human controls the body (joined and attached)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._stop.is_set():
            c = self.controls()
            if c is not None and c.attached:
                self.joined.set()
                return c
            self.server.check_alive("while waiting for the human to join")
            if self.client is not None:
                from mtsandbox.envs.client import ClientError

                denied = self.client.access_denied()
                if denied:
                    raise PlayError(f"the server refused the client: {denied}")
                try:
                    self.client.check_alive("while joining")
                except ClientError as e:
                    raise PlayError(str(e)) from None
            if deadline is not None and time.monotonic() > deadline:
                raise PlayError(f"nobody joined as {self.name!r} within {timeout_s:.0f} s")
            time.sleep(0.05)
        raise KeyboardInterrupt  # stop() while waiting

    def _body_index(self, c: HumanControls) -> int:
        return 0 if self.cfg.role == "agent" else max(c.body, 1)

    def _agent_action(self) -> int:
        p = self.cfg.agent_policy
        if p == "random":
            return int(self._rng.integers(len(self.action_names)))
        if p in self.cfg.agent_factories:
            return int(self._agent.act())
        return self.action_names.index("noop")

    def run(self) -> list[Path]:
        """Play the configured number of episodes; returns the episode directories."""
        if self.env is None:
            self.start()
        c = self.cfg
        self._say(f"waiting for {self.name!r} to join (password in the command line above)")
        self.wait_for_human(c.join_timeout_s)
        self._say(f"{self.name} joined; starting in {c.start_delay_s:g} s")
        time.sleep(max(c.start_delay_s, 0.0))
        for ep in range(c.episodes):
            if self._stop.is_set():
                break
            if ep > 0:
                time.sleep(max(c.between_episodes_s, 0.0))
                self._reset(None)
            if not self._play_episode():
                break
        return list(self.episode_paths)

    def _play_episode(self) -> bool:
        """One episode; False when it ended early (stop, or the human stayed away)."""
        c = self.cfg
        u = self.env.unwrapped
        period = 1.0 / c.hz
        last: str | None = None
        nxt = time.monotonic()
        away_since: float | None = None
        t0, n0 = time.monotonic(), self.steps
        while not self._stop.is_set():
            # Real time: each step starts one period after the previous (no catching up).
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            elif now - nxt > period:
                nxt = now
            nxt += period
            h = self.controls()
            if h is None or not h.attached:
                away_since = away_since or time.monotonic()
                if c.away_timeout_s is not None and time.monotonic() - away_since > \
                        c.away_timeout_s:
                    self._say(f"{self.name} has been away for {c.away_timeout_s:.0f} s: "
                              "ending the episode")
                    return False
                self.server.check_alive("while the human is away")
                continue
            away_since = None
            bi = self._body_index(h)
            pose = u.world.poses[bi]
            name = human_action(h, float(pose[3]), float(pose[4]), self.action_names, last)
            if name not in self.action_names:
                name = "noop"
            last = name
            self.action_counts[name] = self.action_counts.get(name, 0) + 1
            rec = {"role": c.role, "action": name, **h.record()}
            if c.role == "agent":
                action = self.action_names.index(name)
            else:
                self._overseer_action = name
                action = self._agent_action()
            self.env.set_policy_outputs(human=rec)
            _obs, _r, terminated, truncated, _info = self.env.step(action)
            self.steps += 1
            if terminated or truncated:
                dt = time.monotonic() - t0
                self._say(f"episode done: {self.steps - n0} steps in {dt:.1f} s "
                          f"({(self.steps - n0) / max(dt, 1e-9):.1f} steps/s), "
                          f"{'terminated' if terminated else 'truncated'}")
                return True
        return False

    # -- shutdown -----------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.env is not None:
            w = getattr(self.env, "writer", None)
            if w is not None and not w.closed:
                w.meta.setdefault("human_play", {})["interrupted"] = True
            with contextlib.suppress(Exception):
                self.env.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()

    def __enter__(self) -> HumanPlay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
