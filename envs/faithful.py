"""Faithful observations: the agent's view drawn by the real Minetest client.

The fast path renders the agent's first-person view in Python from the voxel state. This module
swaps that image for a frame of Debian's real client, bound to the agent's camera by the mod's
``watch.lua`` and run headless (:class:`~mtsandbox.envs.client.MinetestClient`). Spaces, ids,
rewards and ``info`` stay those of the fast path (the Python render still feeds
``tree_in_view`` and the task's labels); only the observed pixels change.

Frame/step sync: the mod lets the engine run after every env step (``sync_every_step``), the
watcher's camera follows the agent body, and one engine step later a HUD marker of 8 squares
shows ``step mod 256``. The window is ``2 * strip`` rows taller than the observation, with the
vertical field of view widened so that the middle ``H`` rows have exactly the env's ``fov_deg``
(same horizontal fov, same optical axis); the marker lives in the bottom strip and is cropped
off, so observations never contain it.

Wiring (``MinetestEnv``): ``obs_source="client"`` calls :meth:`FaithfulObserver.configure` on
the env config before the server starts, and :meth:`FaithfulObserver.frame` in ``_observe`` for
the RGB image; ``close()`` closes the observer first.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from typing import Any

import numpy as np

from mtsandbox.envs.bridge import WAKE_DATAGRAM
from mtsandbox.envs.client import ClientConfig, ClientError, MinetestClient, decode_marker


def strip_rows(height: int) -> int:
    """Rows above and below the observation in the client window (marker in the bottom one)."""
    return max(3, round(height / 16))


def window_fov_deg(width: int, height: int, fov_deg: float = 72.0) -> float:
    """The ``fov`` to give the client so that the middle ``height`` rows of its window
    (``height + 2 strips`` tall) span ``fov_deg`` vertically.

    Minetest 5.6 widens the vertical fov of windows narrower than 16:10 by
    ``clamp(sqrt(1.6 / aspect), 1, 1.4)`` (camera.cpp); this undoes that, so a real client shows
    exactly the projection of the Python renderer (whose ``fov_deg`` is plainly vertical).
    """
    m = strip_rows(height)
    win_h = height + 2 * m
    want = 2.0 * math.atan(math.tan(math.radians(fov_deg) / 2.0) * win_h / height)
    widen = min(max(math.sqrt(1.6 / (width / win_h)), 1.0), 1.4)
    return math.degrees(want / widen)


class FaithfulObserver:
    LOOK_WAIT_S = 0.05
    """Observation frames from a real client bound to the agent's camera.

    Args:
        width, height: observation size (the env's); the window is ``height + 2*strip`` rows.
        fov_deg: the env's vertical field of view.
        name: client account bound to the camera (watch.lua binds "watcher").
        viewing_range: client view distance (the Python renderer fogs out at 48 nodes).
        step_timeout_s: how long to wait for the frame of a step.
        reset_settle_s: after a reset, frames must stay still this long (the client loads the
            rebuilt arena's map blocks) before the reset frame is taken.
        client_config: extra :class:`ClientConfig` fields (e.g. ``keep_run_dir``).
    """

    def __init__(self, width: int = 64, height: int = 64, fov_deg: float = 72.0,
                 name: str = "watcher", viewing_range: int = 48, step_timeout_s: float = 20.0,
                 reset_settle_s: float = 0.25, first_settle_s: float = 1.0,
                 first_min_s: float = 5.0,
                 client_config: dict | None = None) -> None:
        if width < 32 or height < 16:
            raise ValueError("obs_source='client' needs width >= 32 and height >= 16 (the step "
                             "marker needs 8 squares of at least 4 pixels)")
        self.width, self.height, self.fov_deg = int(width), int(height), float(fov_deg)
        self.m = strip_rows(self.height)
        self.win_h = self.height + 2 * self.m
        self.frac = self.m / self.win_h
        self.name = name
        self.viewing_range = viewing_range
        self.step_timeout_s = step_timeout_s
        self.reset_settle_s = reset_settle_s
        self.first_settle_s = first_settle_s
        self.first_min_s = first_min_s
        self._joined = 0.0
        self.client_config = dict(client_config or {})
        self.client: MinetestClient | None = None
        self._server: Any = None
        self._udp: socket.socket | None = None
        self._last_vox: np.ndarray | None = None
        self._first = True
        self._last_look: np.ndarray | None = None
        self.stats = {"frames": 0, "grabs": 0, "wait_s": 0.0, "settle_timeouts": 0,
                      "look_waits_capped": 0}

    # -- wiring -----------------------------------------------------------------------------
    def server_conf(self) -> dict[str, str]:
        """minetest.conf lines that watch.lua reads for the faithful camera."""
        return {
            "mtsandbox_bind": self.name,
            "mtsandbox_faithful": "true",
            "mtsandbox_marker_frac": f"{self.frac:.6f}",
            "mtsandbox_fov": f"{window_fov_deg(self.width, self.height, self.fov_deg):.4f}",
        }

    def configure(self, env_cfg: Any) -> None:
        """Adjust an EnvConfig before its server starts: engine runs after every step, and the
        watch.lua settings for this observer."""
        env_cfg.server.sync_every_step = True
        env_cfg.server.extra_conf = {**env_cfg.server.extra_conf, **self.server_conf()}

    def _ensure_client(self, server: Any) -> MinetestClient:
        if self.client is not None and self._server is server:
            return self.client
        self.close_client()
        host = "127.0.0.1" if server.config.bind_address in ("", "0.0.0.0") else \
            server.config.bind_address
        cfg = ClientConfig(width=self.width, height=self.win_h, viewing_range=self.viewing_range,
                           **self.client_config)
        self.client = MinetestClient(host, server.port, self.name, server.password, cfg)
        self._server = server
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._first = True
        self._joined = time.monotonic()
        return self.client

    def _wake(self) -> None:
        # The engine waits up to 30 ms for network events between steps; while we wait for a
        # frame, nudge it (as the bridge does while it waits for a reply).
        if self._udp is not None and self._server is not None:
            with contextlib.suppress(OSError):
                self._udp.sendto(WAKE_DATAGRAM, self._server.wake_addr)

    # -- frames -----------------------------------------------------------------------------
    def crop(self, window: np.ndarray) -> np.ndarray:
        """The observation (H, W, 3) from a full window frame."""
        return np.ascontiguousarray(window[self.m:self.m + self.height, :self.width])

    def marker(self, window: np.ndarray) -> int | None:
        return decode_marker(window, self.frac)

    def wait_step(self, step: int, settle_s: float = 0.0, timeout_s: float | None = None,
                  look_changed: bool = False, not_before: float = 0.0) -> np.ndarray:
        """Full window frame showing env step ``step`` (marker == step mod 256); with
        ``settle_s``, then wait until the picture has not changed for that long.

        ``look_changed``: the camera's yaw/pitch changed this step. The client applies a
        forced look one frame after it applies the HUD change that arrived with it (Game::run:
        processClientEvents sets the view target, the next frame moves the camera), so the
        first frame with the new marker still has the old look: take the next different frame
        (or, if nothing changes within ``LOOK_WAIT_S``, the view did not depend on the look).
        """
        assert self.client is not None
        want = step % 256
        t0 = time.monotonic()
        timeout = timeout_s or self.step_timeout_s
        grabs = [0]

        def ok(f: np.ndarray) -> bool:
            grabs[0] += 1
            return self.marker(f) == want

        try:
            frame = self.client.wait_frame(ok, timeout_s=timeout, poll_s=0.0, between=self._wake)
        except ClientError as e:
            raise ClientError(f"no client frame for step {step} (marker {want}) within "
                              f"{timeout:.0f} s: {e}") from None
        if look_changed:
            first = frame
            until = time.monotonic() + self.LOOK_WAIT_S
            while time.monotonic() < until:
                f = self.client.grab()
                grabs[0] += 1
                if self.marker(f) == want and not np.array_equal(f, first):
                    frame = f
                    break
            else:
                self.stats["look_waits_capped"] += 1
        if settle_s > 0:
            frame = self._settle(frame, settle_s, timeout, not_before)
        self.stats["frames"] += 1
        self.stats["grabs"] += grabs[0]
        self.stats["wait_s"] += time.monotonic() - t0
        return frame

    def _settle(self, frame: np.ndarray, settle_s: float, timeout_s: float,
                not_before: float = 0.0) -> np.ndarray:
        assert self.client is not None
        deadline = max(time.monotonic() + min(timeout_s, settle_s + 3.0), not_before + 3.0)
        still_since = time.monotonic()
        last = frame.astype(np.int16)
        while True:
            self._wake()
            time.sleep(0.01)
            f = self.client.grab()
            cur = f.astype(np.int16)
            if np.abs(cur - last).mean() > 0.5 or self.marker(f) != self.marker(frame):
                still_since = time.monotonic()
            last, frame = cur, f
            if time.monotonic() - still_since >= settle_s and time.monotonic() >= not_before:
                return frame
            if time.monotonic() > deadline:
                self.stats["settle_timeouts"] += 1
                return frame

    def frame(self, env: Any) -> np.ndarray:
        """The observation for the env's current step, (H, W, 3) uint8."""
        assert env.server is not None and env.world is not None
        self._ensure_client(env.server)
        step = int(env._t)
        vox = env.world.vox
        look = env.world.poses[0, 3:5].copy()
        if step == 0:
            # After a reset the client receives the rebuilt arena's blocks; after joining, all
            # blocks in view (the server pauses 2 s whenever it finds nothing new to send, so
            # a still picture alone does not prove the first load is complete).
            first = self._first
            self._first = False
            window = self.wait_step(
                0, settle_s=self.first_settle_s if first else self.reset_settle_s,
                timeout_s=max(self.step_timeout_s, 60),
                not_before=self._joined + self.first_min_s if first else 0.0)
        else:
            # Node changes (digs) are re-meshed by the client asynchronously: let them land.
            changed = self._last_vox is not None and not np.array_equal(vox, self._last_vox)
            turned = self._last_look is not None and not np.array_equal(look, self._last_look)
            window = self.wait_step(step, settle_s=0.06 if changed else 0.0, look_changed=turned)
        self._last_vox = vox.copy()
        self._last_look = look
        return self.crop(window)

    # -- shutdown ---------------------------------------------------------------------------
    def close_client(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        if self._udp is not None:
            self._udp.close()
        self._udp = None
        self._server = None

    def close(self) -> None:
        self.close_client()


def enable(env: Any) -> FaithfulObserver:
    """The observer of an env made with ``obs_source="client"``."""
    obs = getattr(env.unwrapped, "_faithful", None)
    if obs is None:
        raise RuntimeError("make the env with obs_source='client' to use the real client")
    return obs
