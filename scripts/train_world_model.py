"""``mtsandbox train-world-model``: see mtsandbox/cli/train_world_model.py."""

import sys

from mtsandbox.cli.train_world_model import main

if __name__ == "__main__":
    sys.exit(main())
