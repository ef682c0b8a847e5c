"""``mtsandbox bench model-based``: see mtsandbox/cli/bench_model_based.py."""

import sys

from mtsandbox.cli.bench_model_based import main

if __name__ == "__main__":
    sys.exit(main())
