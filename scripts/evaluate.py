#!/usr/bin/env python
"""Thin entry point: ``python scripts/evaluate.py [eval options]`` == ``mtsandbox eval ...``."""

import sys

from mtsandbox.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
