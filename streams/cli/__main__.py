"""``python -m streams.cli``: the ``lintas`` command (the worker's supervisor starts it so)."""

import sys

from streams.cli import main

sys.exit(main())
