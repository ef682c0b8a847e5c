"""Facts shared with the Lua mod, read from the one file both sides read
(``mod/mtsandbox/shared.json``): event codes, action flags, body geometry.
``tests/test_shared_facts.py`` checks that the mod takes them from there too."""

from __future__ import annotations

import json
from pathlib import Path

SHARED_FILE = Path(__file__).parent / "mod" / "mtsandbox" / "shared.json"
_SHARED = json.loads(SHARED_FILE.read_text())

EVENT_CODES: dict[str, int] = {k: int(v) for k, v in _SHARED["events"].items()}
"""Event kind name -> the byte the mod sends (``docs/protocol.md``)."""

ACTION_FLAGS: dict[str, int] = {k: int(v) for k, v in _SHARED["flags"].items()}
"""Action flag name -> its bit in a body action's ``flags`` byte."""

EYE_HEIGHT: float = float(_SHARED["body"]["eye_height"])
"""Eye above the feet (Minetest's player_api default)."""

BODY_HALF_WIDTH: float = float(_SHARED["body"]["half_width"])
"""Half the width of a body's box on x and z."""

BODY_HEIGHT: float = float(_SHARED["body"]["height"])
"""Height of a body's collision box (player_api's collisionbox)."""

BODY_DRAWN_HEIGHT = 1.77
"""Height of the box the Python renderer draws for a body. It differs from the collision box
(:data:`BODY_HEIGHT`, 1.7): kept because changing it changes observations whenever another
body is in view (that needs new env versions)."""
