"""Body geometry shared by the mod (``mod/mtsandbox/bodies.lua``), the world state and the
renderer. ``tests/test_shared_facts.py`` checks that the Lua side says the same."""

EYE_HEIGHT = 1.47
"""Eye above the feet (Minetest's player_api default; ``bodies.lua`` ``EYE``)."""

BODY_HALF_WIDTH = 0.3
"""Half the width of a body's box on x and z (``bodies.lua`` ``HW``)."""

BODY_HEIGHT = 1.7
"""Height of a body's collision box (``bodies.lua`` ``H``, player_api's collisionbox)."""

BODY_DRAWN_HEIGHT = 1.77
"""Height of the box the Python renderer draws for a body. It differs from the collision box
(:data:`BODY_HEIGHT`): it is kept because changing it changes observations whenever another
body is in view (an env version bump)."""
