"""``python -m bench.owntext``: the measurement lives in ``supportd/quality/owntext.py`` (the tests use it too)."""

from __future__ import annotations

import sys

from supportd.quality.owntext import main

if __name__ == "__main__":
    sys.exit(main())
