"""``python -m bench.intents``: the measurement lives in ``supportd/quality/intents.py`` (the tests use it too)."""

from __future__ import annotations

import sys

from supportd.quality.intents import main

if __name__ == "__main__":
    sys.exit(main())
