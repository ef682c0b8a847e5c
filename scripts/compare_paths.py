"""``mtsandbox bench paths``: sim-to-real check; see mtsandbox/cli/bench_paths.py."""

import sys

from mtsandbox.cli.bench_paths import main

if __name__ == "__main__":
    sys.exit(main())
