"""``python -m sparkvision``: the same as the ``sparkvision`` console script."""

import sys

from sparkvision.cli import main

sys.exit(main())
