"""Python side of the lockstep protocol (see docs/protocol.md).

Frames are ``u32 little-endian length + payload``; the payload's first byte is the message
type. While waiting for a reply the client ``select()``s with a 0.5 ms timeout and, on each
timeout, sends a 10-byte datagram to the server's own UDP port: Minetest 5.6.1 otherwise waits
up to 30 ms in ``Receive()`` between engine steps (the 33 steps/s stall). The server ignores the
datagram (protocol id, peer 0, channel 0, ORIGINAL packet, unknown command 0xFFFF).
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from dataclasses import dataclass

import numpy as np

from mtsandbox.envs.server import PROTOCOL_VERSION, MinetestServer, ServerError
from mtsandbox.envs.shared import ACTION_FLAGS, EVENT_CODES

WAKE_DATAGRAM = bytes.fromhex("4f45740300000001ffff")
_HDR = struct.Struct("<I")

# Per-body action on the wire: fwd i8, side i8, dyaw i16 (centidegrees), dpitch i16, flags u8.
ACTION_DTYPE = np.dtype([("fwd", "i1"), ("side", "i1"), ("dyaw", "<i2"), ("dpitch", "<i2"),
                         ("flags", "u1")])
_F = ACTION_FLAGS  # mod/mtsandbox/shared.json, which the mod reads too
FLAG_JUMP, FLAG_PUNCH, FLAG_USE, FLAG_PLACE = _F["jump"], _F["punch"], _F["use"], _F["place"]

BODY_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("yaw", "<f4"), ("pitch", "<f4"),
                       ("vy", "<f4"), ("on_ground", "u1"), ("look_p", "u1"), ("look_dist", "<f4"),
                       ("look_x", "<i2"), ("look_y", "<i2"), ("look_z", "<i2")])
CHANGE_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("z", "<i2"), ("p", "u1")])
EVENT_DTYPE = np.dtype([("kind", "u1"), ("body", "u1"), ("x", "<i2"), ("y", "<i2"), ("z", "<i2"),
                        ("a", "<i4"), ("b", "<i4")])
EVENT_NAMES = {code: name for name, code in EVENT_CODES.items()}  # 2 -> "dig", ...


class ProtocolError(RuntimeError):
    """The mod rejected a message or sent one that does not parse."""


@dataclass
class StepReply:
    step: int
    bodies: np.ndarray  # BODY_DTYPE (n_bodies,)
    changes: np.ndarray  # CHANGE_DTYPE (n,)
    events: np.ndarray  # EVENT_DTYPE (n,)


@dataclass
class ResetReply:
    meta: dict
    vox: np.ndarray  # uint8 (SX, SY, SZ)


SUPPORTED_ENGINE = "5.6."  # the UDP wake datagram and the lockstep timing are 5.6.1's


def check_hello(hello: object) -> None:
    """The mod speaks this protocol version on the engine the lockstep trick was measured on;
    anything else is one clear error before the first message."""
    if not isinstance(hello, dict):
        raise ProtocolError("the mod's hello is not a JSON object")
    if hello.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError(f"the mod speaks protocol {hello.get('protocol')!r}, this controller "
                            f"{PROTOCOL_VERSION} (mod and Python package from different versions)")
    engine = str(hello.get("engine", ""))
    if not engine.startswith(SUPPORTED_ENGINE):
        raise ServerError(f"Minetest {engine or '(unknown)'} is not supported: the lockstep "
                          f"bridge needs {SUPPORTED_ENGINE}x (Debian's minetest-server 5.6.1)")


class Bridge:
    """Lockstep client over the server's bridge socket."""

    def __init__(self, server: MinetestServer, reply_timeout_s: float = 30.0) -> None:
        if server.sock is None:
            raise ServerError("server has no bridge connection")
        self.server = server
        self.sock = server.sock
        self.reply_timeout_s = reply_timeout_s
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._buf = bytearray(1 << 16)
        self._view = memoryview(self._buf)
        self.wakes_sent = 0
        hello_type, hello = self._recv()
        if hello_type != ord("H"):
            raise ProtocolError(f"expected hello from the mod, got message type {hello_type}")
        try:
            self.hello = json.loads(bytes(hello[1:]))
        except ValueError:
            raise ProtocolError("the mod's hello is not JSON") from None
        check_hello(self.hello)

    def close(self) -> None:
        self._udp.close()

    # -- framing ----------------------------------------------------------------------------
    def _send(self, payload: bytes) -> None:
        try:
            self.sock.sendall(_HDR.pack(len(payload)) + payload)
        except OSError as e:
            self.server.check_alive("while sending to the mod")
            raise ServerError(f"bridge send failed: {e}\n{self.server.log_tail()}") from e

    def _read_exact(self, n: int, deadline: float) -> memoryview:
        if n > len(self._buf):
            self._buf = bytearray(n)
            self._view = memoryview(self._buf)
        got = 0
        sock, udp, wake = self.sock, self._udp, self.server.wake_addr
        while got < n:
            r, _, _ = select.select((sock,), (), (), 0.0005)
            if not r:
                udp.sendto(WAKE_DATAGRAM, wake)
                self.wakes_sent += 1
                if time.monotonic() > deadline:
                    self.server.check_alive("while waiting for a reply")
                    raise ServerError(
                        f"no reply from the mod within {self.reply_timeout_s:.0f} s (hung server?)"
                        f"\n{self.server.log_tail()}"
                    )
                continue
            try:
                k = sock.recv_into(self._view[got:n], n - got)
            except OSError as e:  # ECONNRESET: the server died with our request unread
                self.server.check_alive("(bridge reset)")
                raise ServerError(f"bridge receive failed: {e}\n{self.server.log_tail()}") from e
            if k == 0:
                self.server.check_alive("(bridge closed)")
                raise ServerError(f"the mod closed the bridge\n{self.server.log_tail()}")
            got += k
        return self._view[:n]

    def _recv(self, timeout_s: float | None = None) -> tuple[int, memoryview]:
        deadline = time.monotonic() + (timeout_s or self.reply_timeout_s)
        (n,) = _HDR.unpack(self._read_exact(4, deadline))
        if n < 1 or n > (64 << 20):
            raise ProtocolError(f"bad frame length {n} from the mod")
        payload = self._read_exact(n, deadline)
        t = payload[0]
        if t == ord("E"):
            raise ProtocolError("mod: " + bytes(payload[1:]).decode(errors="replace"))
        return t, payload

    def _request(self, payload: bytes, expect: str, timeout_s: float | None = None) -> memoryview:
        self._send(payload)
        t, reply = self._recv(timeout_s)
        if t != ord(expect):
            raise ProtocolError(f"expected reply {expect!r}, got {chr(t)!r}")
        return reply

    # -- messages ---------------------------------------------------------------------------
    def ping(self, payload: bytes = b"") -> bytes:
        return bytes(self._request(b"P" + payload, "p")[1:])

    def options(self, **opts: object) -> None:
        self._request(b"O" + json.dumps(opts).encode(), "o")

    def reset(self, cfg: dict) -> ResetReply:
        reply = self._request(b"R" + json.dumps(cfg).encode(), "R", timeout_s=60.0)
        (jn,) = _HDR.unpack_from(reply, 1)
        meta = json.loads(bytes(reply[5 : 5 + jn]))
        meta["shape"] = [int(v) for v in meta["shape"]]
        meta["origin"] = [int(v) for v in meta["origin"]]
        sx, sy, sz = meta["shape"]
        vox = np.frombuffer(reply[5 + jn :], dtype=np.uint8).copy()
        if vox.size != sx * sy * sz:
            raise ProtocolError(f"reset: {vox.size} voxels for shape {meta['shape']}")
        return ResetReply(meta=meta, vox=vox.reshape(sx, sy, sz))

    def step(self, actions: np.ndarray) -> StepReply:
        """actions: ACTION_DTYPE array, one per body in spawn order."""
        reply = self._request(b"S" + bytes([len(actions)]) + actions.tobytes(), "S")
        step, nb = struct.unpack_from("<IB", reply, 1)
        off = 6
        bodies = np.frombuffer(reply, BODY_DTYPE, nb, off).copy()
        off += nb * BODY_DTYPE.itemsize
        (nc,) = struct.unpack_from("<H", reply, off)
        off += 2
        changes = np.frombuffer(reply, CHANGE_DTYPE, nc, off).copy()
        off += nc * CHANGE_DTYPE.itemsize
        (ne,) = struct.unpack_from("<H", reply, off)
        off += 2
        events = np.frombuffer(reply, EVENT_DTYPE, ne, off).copy()
        return StepReply(step, bodies, changes, events)
