"""Facts the Lua mod and Python share come from one file (envs/mod/mtsandbox/shared.json):
Python's constants are its values, and the mod reads it instead of writing numbers of its own.
(The real-server tests check the behaviour: events decode, flags act, eyes are where the
renderer puts them.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mtsandbox.envs import bridge, shared
from mtsandbox.envs.steering import aim

MOD = Path(shared.__file__).parent / "mod" / "mtsandbox"
DATA = json.loads((MOD / "shared.json").read_text())


def test_python_constants_are_the_files():
    assert shared.EVENT_CODES == DATA["events"]
    assert {v: k for k, v in bridge.EVENT_NAMES.items()} == DATA["events"]
    flags = DATA["flags"]
    assert (bridge.FLAG_JUMP, bridge.FLAG_PUNCH, bridge.FLAG_USE, bridge.FLAG_PLACE) == (
        flags["jump"], flags["punch"], flags["use"], flags["place"])
    assert sorted(flags.values()) == [1, 2, 4, 8]  # one bit each
    body = DATA["body"]
    assert (shared.BODY_HALF_WIDTH, shared.BODY_HEIGHT, shared.EYE_HEIGHT) == (
        body["half_width"], body["height"], body["eye_height"])
    # The steering helpers aim from the same eye: a point at eye height is level.
    import numpy as np

    _, dpitch, _ = aim(np.array([0.0, 0.0, 0.0, 0.0, 0.0]), (0.0, shared.EYE_HEIGHT, 5.0))
    assert abs(dpitch) < 1e-12


def test_mod_reads_the_file_and_writes_no_codes_of_its_own():
    init = (MOD / "init.lua").read_text()
    bodies = (MOD / "bodies.lua").read_text()
    assert '"/shared.json"' in init and "(arena, palette, shared)" in init
    assert "shared.body.half_width, shared.body.height, shared.body.eye_height" in bodies
    # Every event the mod appends starts with a named kind, never a bare number.
    appended = re.findall(r"events\[#events \+ 1\] = \{\s*([^,]+),", bodies)
    assert appended and all(k.startswith("EV.") for k in appended), appended
    assert {k[3:] for k in appended} <= set(DATA["events"])
    assert re.search(r"local JUMP, PUNCH, USE, PLACE = shared\.flags\.", bodies)
    # No geometry literals left beside the file's.
    for literal in ("1.47", "1.7,", "0.3, 1.7"):
        assert literal not in bodies, literal
