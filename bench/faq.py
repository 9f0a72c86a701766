"""``python -m bench.faq``: the measurement lives in ``supportd/quality/faq.py`` (the tests use it too)."""

from __future__ import annotations

import sys

from supportd.quality.faq import main

if __name__ == "__main__":
    sys.exit(main())
