"""Tools around the environment, beside the CLI: the episode recorder and its format
(``recording``), the web replay viewer (``replay_server`` + ``replay_static/``), human play
(``play``) and re-simulation of recordings (``resim``). They import ``mtsandbox.envs`` and
nothing above it (see ``[tool.importlinter]`` in pyproject.toml)."""
