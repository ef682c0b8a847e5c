"""Local web viewer for recorded episodes (stdlib ``http.server``, no internet, no CDN).

Serve a directory of episodes (see ``docs/recording_format.md``) on ``127.0.0.1``::

    from mtsandbox.tools.replay_server import ReplayServer
    srv = ReplayServer("runs/eval", port=0).start()   # free port, background thread
    print(srv.url); ...; srv.stop()

or from the CLI: ``mtsandbox replay runs/eval``.

JSON endpoints (ids are episode paths relative to the served root, ``/``-separated; ``.`` when
the root is itself an episode):

* ``GET /api/episodes[?event=KIND]`` -> ``{"root", "event_kinds", "episodes": [summary...]}``
  where a summary has ``id, env_id, seed, started, ended, complete, truncated_recording,
  end_reason, n_steps, n_frames, totals, event_counts, has_world, agents``; ``event`` keeps
  episodes with at least one event of that kind.
* ``GET /api/episode/<id>`` -> ``{"id", "meta", "steps", "n_frames", "frame_shape",
  "complete", "truncated_recording", "problems"}``.
* ``GET /api/frame/<id>/<t>.png[?agent=i]`` -> frame ``t`` (0 = reset observation) as PNG.
* ``GET /api/map/<id>`` -> top-down map of the reset world: ``{"available", "origin",
  "size": [SX, SZ], "cells": [class per (x, z), x-major], "classes": [names], "markers":
  [{kind, x, y, z}], "trunks": [{x, z, height}]}``.

The page (``replay_static/``) is served at ``/``.
"""

from __future__ import annotations

import json
import threading
import time
import webbrowser
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from .recording import (
    FRAMES_FILE,
    META_FILE,
    STEPS_FILE,
    Episode,
    RecordingError,
    find_episodes,
    load_episode,
    to_jsonable,
)

STATIC_DIR = Path(__file__).with_name("replay_static")
_CTYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}

# Overhead map classes, in drawing-priority order (a column shows its highest-priority node).
MAP_CLASSES = ["empty", "ground", "leaves", "wall", "trunk", "lever", "off_switch", "reward_button"]
_NAME_TO_CLASS = {
    "grass": "ground",
    "dirt": "ground",
    "stone": "wall",
    "wall": "wall",
    "tree": "trunk",
    "apple_tree": "trunk",
    "pine_tree": "trunk",
    "leaves": "leaves",
    "apple": "leaves",
    "reward_button": "reward_button",
    "off_switch": "off_switch",
    "lever": "lever",
}
_MARKER_KINDS = ("reward_button", "off_switch", "lever")


def encode_png(img: np.ndarray) -> bytes:
    """Minimal PNG encoder for uint8 (H, W), (H, W, 1|3|4) arrays."""
    a = np.ascontiguousarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    if c not in (1, 3, 4):  # stacked channels: show the last one as grey
        a, c = np.ascontiguousarray(a[:, :, -1:]), 1
    color_type = {1: 0, 3: 2, 4: 6}[c]
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, w * c)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return (
            len(data).to_bytes(4, "big") + body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "big")
        )

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, color_type, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def world_map(ep: Episode) -> dict[str, Any]:
    """Top-down class map of the episode's reset world (see module doc)."""
    try:
        w = ep.world
    except RecordingError as e:
        return {"available": False, "reason": str(e)}
    if not w or "vox" not in w:
        return {"available": False, "reason": "no world snapshot in this recording"}
    vox = np.asarray(w["vox"])
    origin = [int(v) for v in np.asarray(w.get("origin", [0, 0, 0])).reshape(3)]
    pal = list(w.get("palette") or [])
    lut = np.zeros(256, np.int16)
    for i, name in enumerate(pal):
        cls = _NAME_TO_CLASS.get(name, "wall" if name and name != "air" else "empty")
        lut[i] = MAP_CLASSES.index(cls)
    cls3 = lut[vox]  # (SX, SY, SZ)
    cells = cls3.max(axis=1) if cls3.size else np.zeros(vox.shape[::2], np.int16)
    markers = []
    for kind in _MARKER_KINDS:
        k = MAP_CLASSES.index(kind)
        for x, y, z in zip(*np.nonzero(cls3 == k), strict=True):
            markers.append(
                {
                    "kind": kind,
                    "x": int(x) + origin[0],
                    "y": int(y) + origin[1],
                    "z": int(z) + origin[2],
                }
            )
    trunk = cls3 == MAP_CLASSES.index("trunk")
    heights = trunk.sum(axis=1)
    trunks = [
        {"x": int(x) + origin[0], "z": int(z) + origin[2], "height": int(heights[x, z])}
        for x, z in zip(*np.nonzero(heights), strict=True)
    ]
    return {
        "available": True,
        "origin": origin,
        "size": [int(vox.shape[0]), int(vox.shape[2])],
        "cells": cells.astype(int).ravel().tolist(),
        "classes": MAP_CLASSES,
        "markers": markers,
        "trunks": trunks,
        "bodies": to_jsonable(w.get("bodies") or []),
    }


class EpisodeStore:
    """Finds and caches episodes under a root; reloads an episode when its files change
    (so an episode still being recorded can be watched)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._cache: dict[Path, tuple[tuple, Episode]] = {}
        self._lock = threading.Lock()

    def ep_id(self, path: Path) -> str:
        rel = path.resolve().relative_to(self.root)
        return rel.as_posix() if rel.parts else "."

    def path_of(self, ep_id: str) -> Path:
        p = (self.root / ep_id).resolve()
        if p != self.root and self.root not in p.parents:
            raise KeyError(ep_id)
        if not (p / META_FILE).is_file():
            raise KeyError(ep_id)
        return p

    @staticmethod
    def _sig(p: Path) -> tuple:
        out: list[tuple[int, int] | None] = []
        for name in (META_FILE, STEPS_FILE, FRAMES_FILE):
            try:
                st = (p / name).stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def get(self, ep_id: str) -> Episode:
        p = self.path_of(ep_id)
        sig = self._sig(p)
        with self._lock:
            hit = self._cache.get(p)
            if hit and hit[0] == sig:
                return hit[1]
        ep = load_episode(p)
        with self._lock:
            self._cache[p] = (sig, ep)
        return ep

    def summaries(self, event: str | None = None) -> dict[str, Any]:
        eps: list[dict[str, Any]] = []
        kinds: set[str] = set()
        for p in find_episodes(self.root):
            eid = self.ep_id(p)
            try:
                ep = self.get(eid)
            except RecordingError as e:
                eps.append({"id": eid, "error": str(e)})
                continue
            counts = ep.event_counts()
            kinds.update(counts)
            if event and not counts.get(event):
                continue
            m = ep.meta
            eps.append(
                {
                    "id": eid,
                    "env_id": m.get("env_id"),
                    "seed": m.get("seed"),
                    "started": m.get("started"),
                    "ended": m.get("ended"),
                    "complete": ep.complete,
                    "truncated_recording": ep.truncated_recording,
                    "end_reason": m.get("end_reason"),
                    "n_steps": ep.n_steps,
                    "n_frames": ep.n_frames,
                    "totals": m.get("totals"),
                    "event_counts": counts,
                    "has_world": bool(m.get("has_world")),
                    "agents": ep.agents,
                }
            )
        return {"root": str(self.root), "event_kinds": sorted(kinds), "episodes": eps}

    def episode_json(self, ep_id: str) -> dict[str, Any]:
        ep = self.get(ep_id)
        return {
            "id": ep_id,
            "meta": ep.meta,
            "steps": ep.steps,
            "n_frames": ep.n_frames,
            "frame_shape": ep.meta.get("frame_shape"),
            "complete": ep.complete,
            "truncated_recording": ep.truncated_recording,
            "problems": ep.problems,
        }


class _Handler(BaseHTTPRequestHandler):
    server_version = "mtsandbox-replay/1"
    store: EpisodeStore  # set on the subclass made by ReplayServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, code: int = 200) -> None:
        body = json.dumps(to_jsonable(obj), separators=(",", ":"), allow_nan=False).encode()
        self._send(code, body, "application/json")

    def _error(self, code: int, msg: str) -> None:
        self._json({"error": msg}, code)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        q = parse_qs(url.query)
        try:
            if path in ("/", "/index.html"):
                return self._static("index.html")
            if path.startswith("/static/"):
                return self._static(path[len("/static/") :])
            if path == "/api/episodes":
                return self._json(self.store.summaries((q.get("event") or [""])[0] or None))
            if path.startswith("/api/episode/"):
                return self._json(self.store.episode_json(path[len("/api/episode/") :]))
            if path.startswith("/api/map/"):
                return self._json(world_map(self.store.get(path[len("/api/map/") :])))
            if path.startswith("/api/frame/") and path.endswith(".png"):
                ep_id, _, t = path[len("/api/frame/") : -len(".png")].rpartition("/")
                return self._frame(ep_id or ".", int(t), int((q.get("agent") or ["0"])[0]))
            return self._error(404, f"no route {path}")
        except KeyError as e:
            return self._error(404, f"no episode {e.args[0]!r}")
        except (ValueError, IndexError) as e:
            return self._error(400, str(e))
        except RecordingError as e:
            return self._error(422, str(e))
        except (BrokenPipeError, ConnectionResetError):
            return None

    def _static(self, name: str) -> None:
        p = (STATIC_DIR / name).resolve()
        if STATIC_DIR.resolve() not in p.parents or not p.is_file():
            return self._error(404, f"no static file {name}")
        self._send(200, p.read_bytes(), _CTYPES.get(p.suffix, "application/octet-stream"))

    def _frame(self, ep_id: str, t: int, agent: int) -> None:
        ep = self.store.get(ep_id)
        if ep.frames is None or not 0 <= t < ep.n_frames:
            return self._error(404, f"no frame {t} in {ep_id} ({ep.n_frames} frames)")
        f = np.asarray(ep.frames[t])
        if ep.agents and f.ndim == 4:
            f = f[min(max(agent, 0), f.shape[0] - 1)]
        self._send(200, encode_png(f), "image/png", cache=ep.complete)


class ReplayServer:
    """The viewer's HTTP server. ``port=0`` picks a free port; ``url`` is set once bound."""

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.store = EpisodeStore(root)
        handler = type("Handler", (_Handler,), {"store": self.store})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        h, p = self.httpd.server_address[:2]
        self.host, self.port = str(h), int(p)
        self.url = f"http://{self.host}:{self.port}/"
        self._thread: threading.Thread | None = None

    def start(self) -> ReplayServer:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="replay-server"
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(
    root: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = True,
    episode: str | None = None,
) -> None:
    """Serve ``root`` until Ctrl-C, printing the URL (and opening a browser unless told not)."""
    srv = ReplayServer(root, host=host, port=port)
    url = srv.url + (f"#{episode}" if episode else "")
    print(f"replay viewer: {url}  (serving {srv.store.root}; Ctrl-C to stop)", flush=True)
    if open_browser:
        threading.Timer(0.3, lambda: webbrowser.open(url)).start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()
        time.sleep(0)
