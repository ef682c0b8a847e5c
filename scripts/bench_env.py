"""Bridge and env throughput, soft-reset time: see mtsandbox/cli/bench_env.py."""

from mtsandbox.cli.bench_env import main

if __name__ == "__main__":
    main()
