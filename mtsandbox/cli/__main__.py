"""``python -m mtsandbox.cli``: the same as the ``mtsandbox`` command."""

import sys

from mtsandbox.cli import main

sys.exit(main())
