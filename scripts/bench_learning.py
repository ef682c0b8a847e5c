"""``mtsandbox bench learning``: PPO vs random; see mtsandbox/cli/bench_learning.py."""

import sys

from mtsandbox.cli.bench_learning import main

if __name__ == "__main__":
    sys.exit(main())
