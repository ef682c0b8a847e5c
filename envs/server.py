"""Owner of one real Minetest server process (Debian's unmodified ``minetestserver`` 5.6.1).

One :class:`MinetestServer` per environment: a fresh run directory with a world made from the
template, a free UDP port from the OS, a config written for lockstep, the server started in its
own session, logs kept in the run directory. ``close()`` is idempotent; the process group is
killed on close, on interpreter exit and (through ``PR_SET_PDEATHSIG`` and the bridge socket's
EOF) even when the controlling Python process is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import secrets
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from mtsandbox.envs.nodes import load_palette

SERVER_BIN = Path("/usr/lib/minetest/minetestserver")
MOD_DIR = Path(__file__).parent / "mod" / "mtsandbox"
PROTOCOL_VERSION = 1


class ServerError(RuntimeError):
    """The Minetest server is missing, died, or stopped answering."""


@dataclass
class ServerConfig:
    """Settings for one server process."""

    arena_size: int = 32
    """Width and depth of the arena in nodes (the crop is arena_size x height x arena_size)."""
    arena_height: int = 20
    """Height of the voxel crop in nodes (ground at crop y index 2)."""
    step_interval: float = 0.001
    """``dedicated_server_step`` in seconds; the engine loop runs at most this often."""
    yield_ms: int = 50
    """The mod serves lockstep messages inside one engine step for up to this many ms before
    letting the engine run (send entity updates to watching clients, process joins)."""
    sync_every_step: bool = False
    """Let the engine run after every env step (needed when a real client renders each step)."""
    controller_timeout_s: float = 3600.0
    """The mod shuts the server down after this long without a message from Python."""
    frame_timeout_s: float = 60.0
    """A frame that starts must complete within this long; one that stalls mid-way stops the
    server (the byte stream cannot be framed again)."""
    bind_address: str = "127.0.0.1"
    """Where the server listens for clients; loopback unless a user asks otherwise."""
    startup_timeout_s: float = 60.0
    """How long to wait for the mod's hello after launch."""
    keep_run_dir: bool = False
    """Keep the run directory (world, logs) after close, for debugging."""
    run_root: str | None = None
    """Parent directory of run directories (default: the system temp dir)."""
    extra_conf: dict[str, str] = field(default_factory=dict)
    """Extra minetest.conf lines."""
    client_password: str | None = None
    """Password for real clients joining as watcher/player (random per server when None)."""
    label: str = ""
    """Shown by `mtsandbox view` next to the server (e.g. the env id)."""


def registry_dir() -> Path:
    """Where live servers announce themselves (port, password) for `mtsandbox view`."""
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(tempfile.gettempdir(),
                                                              f"mtsandbox-{os.getuid()}")
    d = Path(base) / "mtsandbox-servers"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def live_servers() -> list[dict]:
    """Servers started by this user that are still running (stale entries are removed)."""
    out = []
    for f in sorted(registry_dir().glob("*.json")):
        try:
            info = json.loads(f.read_text())
            with open(f"/proc/{int(info['pid'])}/status") as st:
                if "zombie" in st.read():
                    raise OSError("zombie")
        except (OSError, ValueError, KeyError):
            f.unlink(missing_ok=True)
            continue
        out.append(info)
    return out


OWNER_FILE = "owner.json"


def _proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (None when it is gone): with the pid
    it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def remove_stale_run_dirs(root: str | Path) -> list[Path]:
    """Remove run directories under ``root`` whose owner (the controller that made them) and
    server are both gone: what a SIGKILLed controller leaves behind. Directories without an
    owner record, kept on purpose (``keep_run_dir``) or of a live owner are left alone."""
    removed = []
    for d in Path(root).glob("mtsandbox-*"):
        f = d / OWNER_FILE
        try:
            own = json.loads(f.read_text())
            if own.get("keep"):
                continue
            alive = [_proc_start(int(own[k])) == own.get(k + "_start")
                     for k in ("owner_pid", "server_pid") if own.get(k)]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if alive and not any(alive):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def free_udp_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a free UDP port on host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pdeathsig() -> None:  # runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_LIVE: weakref.WeakSet[MinetestServer] = weakref.WeakSet()


def _close_all() -> None:
    for srv in list(_LIVE):
        with contextlib.suppress(Exception):
            srv.close()


atexit.register(_close_all)


def _sigterm_to_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _install_sigterm_handler() -> None:
    """A SIGTERM to the controller runs atexit/finally (and so closes servers) instead of
    killing Python outright; only where nobody installed a handler already."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_exit)


class MinetestServer:
    """Start and own one lockstep Minetest server.

    Use as a context manager or call :meth:`close`. :attr:`sock` is the connected bridge socket
    (the mod connects to a Unix socket that this class listens on) and :attr:`hello` the mod's
    greeting.
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.password = self.config.client_password or secrets.token_urlsafe(9)
        self._registry_file: Path | None = None
        self._closed = False
        self._lock = threading.Lock()
        if not SERVER_BIN.exists():
            raise ServerError(
                f"{SERVER_BIN} not found: install Debian's minetest-server "
                "(`apt-get install minetest-server minetest-data`, done by scripts/setup.sh)"
            )
        root = self.config.run_root or tempfile.gettempdir()
        Path(root).mkdir(parents=True, exist_ok=True)
        remove_stale_run_dirs(root)
        self.run_dir = Path(tempfile.mkdtemp(prefix="mtsandbox-", dir=root))
        self._write_owner()
        _LIVE.add(self)
        _install_sigterm_handler()
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    # -- start-up -------------------------------------------------------------------------
    def _write_owner(self) -> None:
        """Who made this run dir (and, once started, which server uses it): lets the next
        start remove it if both die without cleaning up (SIGKILL)."""
        me = os.getpid()
        own = {"owner_pid": me, "owner_pid_start": _proc_start(me),
               "keep": self.config.keep_run_dir}
        if self.proc is not None:
            own.update(server_pid=self.proc.pid, server_pid_start=_proc_start(self.proc.pid))
        tmp = self.run_dir / (OWNER_FILE + ".tmp")
        tmp.write_text(json.dumps(own))
        tmp.replace(self.run_dir / OWNER_FILE)

    def _write_world(self, sock_path: Path) -> Path:
        world = self.run_dir / "world"
        mods = world / "worldmods"
        mods.mkdir(parents=True)
        shutil.copytree(MOD_DIR, mods / "mtsandbox")
        (world / "world.mt").write_text(
            "gameid = minetest\n"
            "backend = sqlite3\nplayer_backend = sqlite3\nauth_backend = sqlite3\n"
            "mod_storage_backend = sqlite3\ncreative_mode = true\nenable_damage = false\n"
        )
        (world / "map_meta.txt").write_text("mg_name = singlenode\nseed = 0\n[end_of_params]\n")
        pal = load_palette()
        bridge_cfg = {
            "protocol": PROTOCOL_VERSION,
            "socket": str(sock_path),
            "palette": [
                {"index": e.index, "name": e.name, "node": e.node, "solid": e.solid,
                 "diggable": e.diggable}
                for e in pal.entries
            ],
            "arena": {"size": self.config.arena_size, "height": self.config.arena_height,
                      "ground_y": 0},
            "yield_ms": self.config.yield_ms,
            "sync_every_step": self.config.sync_every_step,
            "controller_timeout_s": self.config.controller_timeout_s,
            "frame_timeout_s": self.config.frame_timeout_s,
            # Real clients may join only under these names, with this password.
            "clients": {"names": ["watcher", "player", "overseer"], "password": self.password},
        }
        (world / "mtsandbox_bridge.json").write_text(json.dumps(bridge_cfg))
        return world

    def _write_conf(self) -> Path:
        c = self.config
        lines = {
            "bind_address": c.bind_address,
            "port": str(self.port),
            "server_announce": "false",
            "server_name": "mtsandbox",
            "dedicated_server_step": repr(c.step_interval),
            "mg_name": "singlenode",
            "secure.trusted_mods": "mtsandbox",
            "creative_mode": "true",
            "enable_damage": "false",
            "time_speed": "0",
            "world_start_time": "12000",
            "server_unload_unused_data_timeout": "100000000",
            "max_forceloaded_blocks": "4096",
            "disallow_empty_password": "true",
            "enable_rollback_recording": "false",
            "ask_reconnect_on_crash": "false",
            "debug_log_level": "action",
            "static_spawnpoint": "0,2,0",
            "strict_protocol_version_checking": "false",
            **c.extra_conf,
        }
        conf = self.run_dir / "minetest.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        return conf

    def _start(self) -> None:
        sock_path = self.run_dir / "bridge.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock_path))
        listener.listen(1)
        try:
            world = self._write_world(sock_path)
            self.port = free_udp_port(self.config.bind_address)
            conf = self._write_conf()
            self.log_path = self.run_dir / "server.log"
            env = dict(os.environ, HOME=str(self.run_dir))
            self._stdout = open(self.run_dir / "stdout.log", "wb")
            self.proc = subprocess.Popen(
                [str(SERVER_BIN), "--world", str(world), "--config", str(conf),
                 "--logfile", str(self.log_path)],
                cwd=self.run_dir, env=env, stdin=subprocess.DEVNULL, stdout=self._stdout,
                stderr=subprocess.STDOUT, preexec_fn=_pdeathsig,
            )
            self._write_owner()
            listener.settimeout(0.1)
            deadline = time.monotonic() + self.config.startup_timeout_s
            while True:
                try:
                    conn, _ = listener.accept()
                    break
                except TimeoutError:
                    self.check_alive("during start-up")
                    if time.monotonic() > deadline:
                        raise ServerError(
                            f"server did not connect within {self.config.startup_timeout_s:.0f} s"
                            f"\n{self.log_tail()}"
                        ) from None
        finally:
            listener.close()
        conn.setblocking(True)
        self.sock = conn
        self._registry_file = registry_dir() / f"{self.proc.pid}.json"
        self._registry_file.write_text(json.dumps({
            "pid": self.proc.pid, "port": self.port, "address": self.config.bind_address,
            "password": self.password, "run_dir": str(self.run_dir), "label": self.config.label,
            "started": time.time()}))
        self._registry_file.chmod(0o600)
        self.wake_addr = (self.local_host, self.port)

    @property
    def local_host(self) -> str:
        """The address a process on this machine reaches the server at."""
        bind = self.config.bind_address
        return "127.0.0.1" if bind in ("", "0.0.0.0") else bind

    def connect_command(self, name: str = "watcher") -> list[str]:
        """The real Minetest client command line that joins this server."""
        return ["/usr/games/minetest", "--go", "--address", self.local_host,
                "--port", str(self.port),
                "--name", name, "--password", self.password]

    # -- health ---------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, when: str = "") -> None:
        """Raise :class:`ServerError` with the log tail if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            raise ServerError(
                f"minetest server exited (code {rc}) {when}; log tail:\n{self.log_tail()}".strip()
            )

    def log_tail(self, n: int = 15) -> str:
        lines: list[str] = []
        for p in (self.run_dir / "server.log", self.run_dir / "stdout.log"):
            with contextlib.suppress(OSError):
                lines += p.read_text(errors="replace").splitlines()
        errs = [ln for ln in lines if "ERROR" in ln or "error" in ln.lower()]
        tail = lines[-n:]
        return "\n".join((errs[-5:] if errs else []) + ["..."] + tail) if lines else "(no log)"

    # -- shutdown -------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop the server and remove the run directory; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()  # the mod sees EOF and requests shutdown
            self.sock = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    self._kill_group(signal.SIGKILL)
                    self.proc.wait(timeout=5.0)
        if self.proc is not None:
            self._kill_group(signal.SIGKILL)  # anything left in the group
        if hasattr(self, "_stdout"):
            self._stdout.close()
        if self._registry_file is not None:
            self._registry_file.unlink(missing_ok=True)
        if not self.config.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        _LIVE.discard(self)

    def _kill_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def __enter__(self) -> MinetestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
