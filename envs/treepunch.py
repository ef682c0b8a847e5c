"""TreePunch-v0 (sparse) and TreePunchShaped-v0 (EleutherAI treechop_shaped rewards)."""

from __future__ import annotations

from typing import Any

from mtsandbox.envs.core import MinetestEnv
from mtsandbox.envs.tasks import TreePunch


class TreePunchEnv(MinetestEnv):
    """Punch tree trunks in a flat arena with trees placed from the episode seed.

    Reward: +1 per trunk node the agent digs; with ``shaped=True`` also +0.01 per step looking
    at a trunk within 30 nodes and +0.01 per punch on a trunk (``distance_penalty=True`` adds
    -0.01 x distance to the nearest trunk). The episode terminates when no trunk is left;
    the registered ids truncate at 500 steps.
    """

    def __init__(self, shaped: bool = False, distance_penalty: bool = False,
                 render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(task=TreePunch(shaped=shaped, distance_penalty=distance_penalty),
                         render_mode=render_mode, **kwargs)
