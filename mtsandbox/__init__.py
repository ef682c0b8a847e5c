"""Minetest corrigibility sandbox.

The repository's top-level folders are imported under this namespace:
``envs/`` is ``mtsandbox.envs``, ``agents/`` is ``mtsandbox.agents``, ``interp/`` is
``mtsandbox.interp`` and ``experiments/`` is ``mtsandbox.experiments``.
"""

__version__ = "0.1.0"
