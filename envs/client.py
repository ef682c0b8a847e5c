"""Owner of one real Minetest client (Debian's ``/usr/games/minetest``) on a headless X server.

:class:`MinetestClient` starts ``Xvfb`` on a free display (the X server picks it, ``-displayfd``)
and the real client joined to a sandbox server, each in its own session and run directory (a
client ``minetest.conf`` with the settings that matter for faithful frames, the log, the
password file). ``grab()`` returns the window as an (H, W, 3) uint8 array through XShm (mss);
:func:`decode_marker` reads the 8-square step marker that ``watch.lua`` draws for a client bound
to the agent's camera. ``close()`` is idempotent and kills both process groups; they are also
killed at interpreter exit and (``PR_SET_PDEATHSIG``) when the owning Python process dies.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtsandbox.envs.server import _pdeathsig

CLIENT_BIN = Path("/usr/games/minetest")
XVFB_BIN = Path("/usr/bin/Xvfb")

# Client settings that matter for frames that match the Python renderer (docs: DESIGN.md,
# "Observations"): uncapped frame rate even without focus, no shaders/sound/clouds, no pause,
# no selection box, no smoothing, bobbing or filtering, simple leaves, fog from 0.4 of the range.
CLIENT_SETTINGS: dict[str, str] = {
    "fps_max": "1000",
    "fps_max_unfocused": "1000",
    "enable_shaders": "false",
    "enable_sound": "false",
    "enable_clouds": "false",
    "enable_3d_clouds": "false",
    "menu_clouds": "false",
    "pause_on_lost_focus": "false",
    "enable_register_confirmation": "false",
    "node_highlighting": "none",
    "show_entity_selectionbox": "false",
    "smooth_lighting": "false",
    "leaves_style": "opaque",
    "view_bobbing_amount": "0",
    "fall_bobbing_amount": "0",
    "camera_smoothing": "0",
    "cinematic": "false",
    "arm_inertia": "false",
    "mip_map": "false",
    "bilinear_filter": "false",
    "trilinear_filter": "false",
    "anisotropic_filter": "false",
    "fsaa": "0",
    "undersampling": "0",
    "enable_particles": "false",
    "enable_minimap": "false",
    "enable_fog": "true",
    "fog_start": "0.4",
    "directional_colored_fog": "false",
    "fullscreen": "false",
    "autosave_screensize": "false",
    "gui_scaling": "1",
    "hud_scaling": "1",
    "screen_dpi": "72",
    "enable_joysticks": "false",
    "enable_local_map_saving": "false",
    "show_debug": "false",
    "tooltip_show_delay": "0",
    "video_driver": "opengl",
}


class ClientError(RuntimeError):
    """The real client or its X server is missing, died, or did not show a frame."""


@dataclass
class ClientConfig:
    """Settings for one client window."""

    width: int = 64
    """Window width in pixels."""
    height: int = 64
    """Window height in pixels (include any marker strip)."""
    viewing_range: int = 48
    """Client view distance in nodes (the Python renderer's max_distance is 48)."""
    fov_deg: float | None = None
    """Client ``fov`` setting (the server can override it per player)."""
    startup_timeout_s: float = 90.0
    """How long to wait for the X server and the client's window."""
    keep_run_dir: bool = False
    """Keep the run directory (config, logs) after close, for debugging."""
    run_root: str | None = None
    """Parent directory of run directories (default: the system temp dir)."""
    extra_conf: dict[str, str] = field(default_factory=dict)
    """Extra client minetest.conf lines (override CLIENT_SETTINGS)."""
    match_renderer_textures: bool = True
    """Give the client the Python renderer's opaque leaf texture (see _write_texture_pack)."""
    xvfb: bool = True
    """Start a private Xvfb; False uses the current $DISPLAY (a real desktop)."""


_LIVE: weakref.WeakSet[MinetestClient] = weakref.WeakSet()


def _close_all() -> None:
    for c in list(_LIVE):
        with contextlib.suppress(Exception):
            c.close()


atexit.register(_close_all)


def decode_marker(frame: np.ndarray, frac: float, lo: int = 70, hi: int = 185) -> int | None:
    """Read the 8-square marker (see watch.lua) from a full window frame.

    Square i (0 = leftmost) covers x in [i W/8, (i+1) W/8) of the bottom ``frac`` of the
    height; white is bit i set. Returns None unless every square's centre pixel is clearly
    black or white (grey levels in between mean the marker is not drawn / mid-update).
    """
    h, w = frame.shape[:2]
    body = frame[: max(int(h * (1 - frac)) - 1, 1)]
    if int(body.max()) < 40:
        return None  # a black window (not connected yet, or loading): no marker
    y = int(h - max(frac * h, 1.0) / 2.0)
    y = min(max(y, 0), h - 1)
    value = 0
    for i in range(8):
        x = min(int((i + 0.5) * w / 8), w - 1)
        px = frame[y, x].astype(np.int32)
        m, spread = int(px.mean()), int(px.max() - px.min())
        if spread > 40:
            return None
        if m >= hi:
            value |= 1 << i
        elif m > lo:
            return None
    return value


class MinetestClient:
    """Start and own one real client (plus its Xvfb) joined to a server.

    Args:
        address, port: the server to join.
        name, password: the client's account (see watch.lua: only sandbox names may join).
        config: window size, view range, extra client settings.
    """

    def __init__(self, address: str, port: int, name: str, password: str,
                 config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self.name = name
        self.xvfb: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.display: str | None = None
        self._sct = None
        self._closed = False
        self._lock = threading.Lock()
        if not CLIENT_BIN.exists():
            raise ClientError(f"{CLIENT_BIN} not found: install Debian's `minetest` package "
                              "(and xvfb, libgl1-mesa-dri for headless use; scripts/setup.sh)")
        if self.config.xvfb and not XVFB_BIN.exists():
            raise ClientError(f"{XVFB_BIN} not found: `apt-get install xvfb libgl1-mesa-dri`")
        root = self.config.run_root or tempfile.gettempdir()
        Path(root).mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix="mtsandbox-client-", dir=root))
        self.log_path = self.run_dir / "client.log"
        _LIVE.add(self)
        try:
            if self.config.xvfb:
                self._start_xvfb()
            else:
                self.display = os.environ.get("DISPLAY")
                if not self.display:
                    raise ClientError("no $DISPLAY: run with an X desktop or use xvfb=True")
            self._start_client(address, port, name, password)
        except BaseException:
            self.close()
            raise

    # -- start-up ------------------------------------------------------------------------
    def _start_xvfb(self) -> None:
        c = self.config
        r, w = os.pipe()
        self._xvfb_log = open(self.run_dir / "xvfb.log", "wb")
        try:
            self.xvfb = subprocess.Popen(
                [str(XVFB_BIN), "-displayfd", str(w), "-screen", "0",
                 f"{c.width}x{c.height}x24", "-nolisten", "tcp", "-noreset", "+extension",
                 "GLX"],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=self._xvfb_log,
                stderr=subprocess.STDOUT, preexec_fn=_pdeathsig,
            )
        finally:
            os.close(w)
        buf = b""
        deadline = time.monotonic() + 30.0
        import select

        while not buf.endswith(b"\n"):
            if self.xvfb.poll() is not None or time.monotonic() > deadline:
                os.close(r)
                raise ClientError(f"Xvfb did not start:\n{self._tail(self.run_dir / 'xvfb.log')}")
            ready, _, _ = select.select([r], [], [], 0.2)
            if ready:
                chunk = os.read(r, 64)
                if not chunk:
                    break
                buf += chunk
        os.close(r)
        self.display = ":" + buf.decode().strip()

    def _write_conf(self) -> Path:
        c = self.config
        lines = dict(CLIENT_SETTINGS)
        lines.update({"screen_w": str(c.width), "screen_h": str(c.height),
                      "viewing_range": str(c.viewing_range)})
        if c.fov_deg is not None:
            lines["fov"] = f"{c.fov_deg:g}"
        if c.match_renderer_textures:
            lines["texture_path"] = str(self._write_texture_pack())
        lines.update(c.extra_conf)
        conf = self.run_dir / "client.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        return conf

    def _write_texture_pack(self) -> Path:
        """Textures where the Python renderer makes a choice the client cannot: opaque leaves
        are the simple leaf texture over the renderer's dark backing (the client's "opaque"
        leaves are ``default_leaves.png^[noalpha``)."""
        from mtsandbox.envs.textures import opaque_rgb, load_texture

        import imageio.v3 as iio

        d = self.run_dir / "textures"
        d.mkdir(exist_ok=True)
        rgb = opaque_rgb(np.asarray(load_texture("default_leaves_simple.png")))
        iio.imwrite(d / "default_leaves.png", rgb)
        return d

    def _start_client(self, address: str, port: int, name: str, password: str) -> None:
        conf = self._write_conf()
        pw = self.run_dir / "password"
        pw.write_text(password)
        pw.chmod(0o600)
        env = dict(os.environ, HOME=str(self.run_dir), DISPLAY=str(self.display),
                   LIBGL_ALWAYS_SOFTWARE="1")
        env.pop("WAYLAND_DISPLAY", None)
        self._stdout = open(self.run_dir / "stdout.log", "wb")
        self.proc = subprocess.Popen(
            [str(CLIENT_BIN), "--go", "--address", address, "--port", str(port), "--name", name,
             "--password-file", str(pw), "--config", str(conf), "--logfile", str(self.log_path)],
            cwd=self.run_dir, env=env, stdin=subprocess.DEVNULL, stdout=self._stdout,
            stderr=subprocess.STDOUT, preexec_fn=_pdeathsig,
        )

    # -- frames --------------------------------------------------------------------------
    def _grabber(self):
        if self._sct is None:
            try:
                import mss
            except ImportError as e:
                raise ClientError("frame grabbing needs mss: pip install 'mtsandbox[client]'"
                                  ) from e
            factory = getattr(mss, "MSS", None) or mss.mss
            self._sct = factory(display=self.display)
            self._region = {"top": 0, "left": 0, "width": self.config.width,
                            "height": self.config.height}
        return self._sct

    def grab(self) -> np.ndarray:
        """The window now, (H, W, 3) uint8 RGB (XShm through mss)."""
        shot = self._grabber().grab(self._region)
        a = np.frombuffer(shot.raw, dtype=np.uint8).reshape(shot.height, shot.width, 4)
        return a[:, :, 2::-1].copy()  # BGRA -> RGB

    def wait_frame(self, predicate, timeout_s: float = 30.0, poll_s: float = 0.0005,
                   between=None) -> np.ndarray:
        """Grab until ``predicate(frame)`` holds; ``between()`` runs between grabs."""
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self.grab()
            if predicate(frame):
                return frame
            self.check_alive("while waiting for a frame")
            if time.monotonic() > deadline:
                raise ClientError(f"no matching frame within {timeout_s:.0f} s; client log tail:\n"
                                  f"{self.log_tail()}")
            if between is not None:
                between()
            if poll_s:
                time.sleep(poll_s)

    def screenshot(self, path: str | os.PathLike) -> Path:
        """Save the window as a PNG."""
        import imageio.v3 as iio

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(p, self.grab())
        return p

    # -- health --------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, when: str = "") -> None:
        if self.xvfb is not None and self.xvfb.poll() is not None:
            raise ClientError(f"Xvfb exited (code {self.xvfb.returncode}) {when}:\n"
                              f"{self._tail(self.run_dir / 'xvfb.log')}")
        if self.proc is not None and self.proc.poll() is not None:
            raise ClientError(f"minetest client exited (code {self.proc.returncode}) {when}; "
                              f"log tail:\n{self.log_tail()}")

    @staticmethod
    def _tail(p: Path, n: int = 15) -> str:
        try:
            return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def log_tail(self, n: int = 15) -> str:
        lines: list[str] = []
        for p in (self.log_path, self.run_dir / "stdout.log"):
            with contextlib.suppress(OSError):
                lines += p.read_text(errors="replace").splitlines()
        errs = [ln for ln in lines if "ERROR" in ln or "Access denied" in ln]
        return "\n".join([*errs[-5:], "...", *lines[-n:]]) if lines else "(no log)"

    def access_denied(self) -> str | None:
        """The server's reason if it refused this client (from the client log), else None."""
        with contextlib.suppress(OSError):
            for ln in self.log_path.read_text(errors="replace").splitlines():
                if "Access denied" in ln or "access denied" in ln.lower():
                    return ln
        return None

    # -- shutdown ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the client and its X server; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._sct is not None:
            with contextlib.suppress(Exception):
                self._sct.close()
            self._sct = None
        for p in (self.proc, self.xvfb):
            if p is None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5.0)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        for f in ("_stdout", "_xvfb_log"):
            if hasattr(self, f):
                getattr(self, f).close()
        if not self.config.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> MinetestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
