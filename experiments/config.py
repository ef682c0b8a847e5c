"""Where the experiment configs live. The config types and loaders are
``mtsandbox.agents.config`` (training needs them; agents sit below experiments)."""

from __future__ import annotations

from pathlib import Path

EXPERIMENTS_DIR = Path(__file__).resolve().parent
