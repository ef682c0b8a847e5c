"""Protocol fuzzing against a real server: every malformed message gets an error reply (or, for
a frame that cannot be framed, a clean close) and never a hang or a silent success."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtsandbox.envs.bridge import (
    ACTION_DTYPE,
    Bridge,
    ProtocolError,
    check_hello,
)
from mtsandbox.envs.server import MinetestServer, ServerConfig, ServerError

RESET_KEYS = ["seed", "n_trees", "n_apple_trees", "tree_height", "tree_spacing", "dt",
              "walk_speed", "jump_speed", "gravity", "max_fall_speed", "reach",
              "look_distance", "allow_push", "punches", "use_removes", "bodies", "objects",
              "bogus"]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                      st.floats(allow_nan=False, allow_infinity=False, width=32),
                      st.text(max_size=8), st.sampled_from(["tree", "off_switch", "agent"]))
json_value = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4)
                          | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)
body_spec = st.dictionaries(
    st.sampled_from(["name", "kind", "pos", "yaw", "pitch", "near", "face_near", "aim_near",
                     "margin", "min_tree_dist", "x"]), json_value, max_size=4)
reset_cfg = st.fixed_dictionaries({}, optional={
    k: (st.lists(body_spec, max_size=3) if k == "bodies" else json_value) for k in RESET_KEYS})
action = st.tuples(st.integers(-128, 127), st.integers(-128, 127), st.integers(-32768, 32767),
                   st.integers(-32768, 32767), st.integers(0, 255))

# One message per example: the type byte, then a body that is random, a random JSON value, a
# reset config with the real keys and random values, or step actions of random count and range.
message = st.one_of(
    st.tuples(st.sampled_from(b"SROPZ\x00\xff"), st.binary(max_size=80)).map(
        lambda t: bytes([t[0]]) + t[1]),
    json_value.map(lambda v: b"R" + json.dumps(v).encode()),
    reset_cfg.map(lambda v: b"R" + json.dumps(v).encode()),
    json_value.map(lambda v: b"O" + json.dumps(v).encode()),
    st.lists(action, min_size=0, max_size=3).map(
        lambda acts: b"S" + bytes([len(acts)]) + b"".join(struct.pack("<bbhhB", *a)
                                                           for a in acts)),
)
REPLY = {ord("S"): "S", ord("R"): "R", ord("O"): "o", ord("P"): "p"}


def test_random_messages_get_a_reply_and_the_server_keeps_serving():
    with MinetestServer(ServerConfig(frame_timeout_s=2.0)) as srv:
        br = Bridge(srv, reply_timeout_s=10.0)
        br.reset({"seed": 1})
        counts = {"error": 0, "ok": 0}

        @settings(max_examples=2000, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(message)
        def one(payload: bytes) -> None:
            t0 = time.monotonic()
            br._send(payload)
            try:
                t, reply = br._recv(timeout_s=10.0)
            except ProtocolError:  # an 'E' reply: rejected with a reason
                counts["error"] += 1
            else:
                assert payload[0] in REPLY, f"{payload[:20]!r} accepted as {chr(t)!r}"
                assert chr(t) == REPLY[payload[0]], (payload[:40], chr(t))
                if payload[0] == ord("P"):
                    assert bytes(reply[1:]) == payload[1:]
                counts["ok"] += 1
            assert time.monotonic() - t0 < 10.0

        one()
        assert counts["error"] >= 200 and counts["ok"] >= 20, counts  # both paths exercised
        # still a healthy server: a valid reset and step (any earlier reset may have won)
        rr = br.reset({"seed": 7})
        assert rr.vox.shape == tuple(rr.meta["shape"])
        assert br.step(np.zeros(1, ACTION_DTYPE)).step == 1


@pytest.mark.parametrize("frame", [
    b"\x00\x00\x00\x00",  # zero-length frame
    struct.pack("<I", 1 << 30) + b"S",  # longer than any frame may be
    struct.pack("<I", 100) + b"R{\"seed\"",  # body stops mid-way
    b"\x05\x00",  # length header stops mid-way
], ids=["zero", "huge", "stalled-body", "stalled-header"])
def test_unframeable_input_closes_the_bridge_cleanly(frame):
    with MinetestServer(ServerConfig(frame_timeout_s=0.5)) as srv:
        br = Bridge(srv, reply_timeout_s=10.0)
        t0 = time.monotonic()
        br.sock.sendall(frame)
        with pytest.raises(ServerError, match=r"closed the bridge|receive failed|died|exited"):
            br._recv(timeout_s=10.0)
        assert time.monotonic() - t0 < 8.0
        srv.proc.wait(timeout=10)  # and the server shuts down instead of hanging
        assert "mtsandbox" in srv.log_tail(60)


def test_a_rejected_reset_changes_nothing():
    with MinetestServer(ServerConfig()) as srv:
        br = Bridge(srv)
        first = br.reset({"seed": 3})
        walk = np.zeros(1, ACTION_DTYPE)
        walk["fwd"] = 1
        a = br.step(walk)
        for bad, why in [({"seed": 4, "tree_height": [4, 99]}, "tree_height"),
                         ({"seed": 4, "objects": [{"node": "nope"}]}, "unknown object node"),
                         ({"seed": 4, "bodies": [{"near": [3, 1, 2]}]}, "near"),
                         ({"seed": 4, "n_tres": 3}, "unknown key 'n_tres'")]:
            with pytest.raises(ProtocolError, match=why):
                br.reset(bad)
        b = br.step(walk)  # the same episode goes on, from where it was
        assert b.step == a.step + 1
        assert b.bodies["z"][0] != a.bodies["z"][0] or b.bodies["x"][0] != a.bodies["x"][0]
        assert br.reset({"seed": 3}).vox.tobytes() == first.vox.tobytes()


def test_out_of_range_actions_and_bad_options_are_rejected():
    with MinetestServer(ServerConfig()) as srv:
        br = Bridge(srv)
        br.reset({"seed": 1})
        act = np.zeros(1, ACTION_DTYPE)
        act["fwd"] = 5
        with pytest.raises(ProtocolError, match="out of range"):
            br.step(act)
        for opts in (b"O{not json", b"O[1]", b'O{"yield_ms": -3}', b'O{"speed": 1}'):
            with pytest.raises(ProtocolError, match="options"):
                br._request(opts, "o")
        br.options(yield_ms=20)
        assert br.step(np.zeros(1, ACTION_DTYPE)).step == 1


def test_hello_of_another_protocol_or_engine_is_one_clear_error():
    check_hello({"protocol": 1, "engine": "5.6.1"})
    with pytest.raises(ProtocolError, match="protocol 2"):
        check_hello({"protocol": 2, "engine": "5.6.1"})
    with pytest.raises(ServerError, match=r"Minetest 5\.9\.0 is not supported"):
        check_hello({"protocol": 1, "engine": "5.9.0"})
    with pytest.raises(ProtocolError, match="not a JSON object"):
        check_hello([1])


def test_an_optional_part_that_does_not_load_stops_the_server(tmp_path, monkeypatch):
    """watch.lua decides which clients may join; a syntax error there must not open the
    server, so the server refuses to start."""
    import shutil

    from mtsandbox.envs import server as server_mod

    mod = tmp_path / "mtsandbox"
    shutil.copytree(server_mod.MOD_DIR, mod)
    (mod / "watch.lua").write_text((mod / "watch.lua").read_text() + "\nthis is not lua\n")
    monkeypatch.setattr(server_mod, "MOD_DIR", mod)
    with pytest.raises(ServerError, match=r"watch\.lua is present but does not load"):
        MinetestServer(ServerConfig(startup_timeout_s=20.0))
