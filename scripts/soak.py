"""``mtsandbox bench soak``: soak test, random server kills; see mtsandbox/cli/bench_soak.py."""

import sys

from mtsandbox.cli.bench_soak import main

if __name__ == "__main__":
    sys.exit(main())
