"""What reading typos costs per message: ordinary mail, and the worst a hostile mail can do.

    .venv/bin/python -m bench.spelling     # JSON: milliseconds per text, best of 5
"""

from __future__ import annotations

import json
import random
import string
import sys
import time
from collections.abc import Callable

from supportd.decide.spelling import MAX_CHARS, Spelling
from supportd.quality.intents import default_rules

ROUNDS = 5


def best_ms(run: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(min(times) * 1000, 2)


def main() -> int:
    spelling = default_rules().spelling
    assert isinstance(spelling, Spelling)
    ordinary = "Hello, where is my order 77120? It has not arrived yet, can you check? Thanks, Anna\n"
    rng = random.Random(15)
    hostile = " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(14)) for _ in range(2000))
    fresh = lambda: Spelling(spelling.words)  # noqa: E731 - an empty cache each round
    print(json.dumps({
        "benchmark": "spelling",
        "ordinary_mail_ms": best_ms(lambda: fresh().correct(ordinary)),
        "hostile_20k_chars_distinct_14_letter_words_ms": best_ms(lambda: fresh().correct(hostile[:MAX_CHARS])),
        "build_ms": best_ms(fresh),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
