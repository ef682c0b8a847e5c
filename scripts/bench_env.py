"""Bridge and env throughput, soft-reset time: see mtsandbox/bench_env.py."""

from mtsandbox.bench_env import main

if __name__ == "__main__":
    main()
