"""``mtsandbox bench render``: renderer benchmark; see mtsandbox/cli/bench_render.py."""

from mtsandbox.cli.bench_render import main

if __name__ == "__main__":
    main()
