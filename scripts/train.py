#!/usr/bin/env python
"""Thin entry point: ``python scripts/train.py [train options]`` == ``mtsandbox train ...``."""

import sys

from mtsandbox.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
