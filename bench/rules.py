"""What deciding costs a message: the rules and the FAQ, with the literal prefilter and without it.

    .venv/bin/python -m bench.rules     # JSON: CPU milliseconds a message, best of 5 rounds

Messages: the dev set's texts (../shared/corpus/intents/dev.csv) and every message file of the shared
corpus, parsed first (parsing is not measured). ``decide_ms`` is ``RuleSet.decide`` (rules, FAQ,
spelling, mentions, language); ``faq_match_ms`` is ``FaqSet.match`` alone on a fresh view (so it
reads the words itself); ``searches_a_message`` counts ``re.Pattern.search`` calls in ``decide``.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Callable, Sequence

from supportd.decide.faq import DEFAULT_LANGUAGE
from supportd.decide.rules import RuleSet, View, _why
from supportd.intake.message import Inbound, parse
from supportd.quality.intents import DEV_SET, as_email, default_rules, read_examples

ROUNDS = 5
CORPUS = DEV_SET.parents[1]


def messages() -> list[Inbound]:
    found = [as_email(example.text) for example in read_examples()]
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and "intents" not in path.parts and path.suffix not in (".md", ".csv", ".jsonl", ".txt"):
            found.append(parse(path.read_bytes()))
    return found


def best_ms_each(run: Callable[[Inbound], object], msgs: Sequence[Inbound]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for msg in msgs:
            run(msg)
        times.append(time.process_time() - started)
    return round(min(times) * 1000 / len(msgs), 4)


def searches_each(ruleset: RuleSet, msgs: Sequence[Inbound]) -> float:
    """Regular-expression searches ``decide`` makes a message (rules, FAQ and language lists)."""
    counted = [0]

    def count(_frame: object, event: str, called: object) -> None:
        if event == "c_call" and getattr(called, "__name__", "") == "search" and isinstance(
                getattr(called, "__self__", None), re.Pattern):
            counted[0] += 1

    sys.setprofile(count)
    try:
        for msg in msgs:
            ruleset.decide(msg)
    finally:
        sys.setprofile(None)
    return round(counted[0] / len(msgs), 1)


def faq_match(ruleset: RuleSet, msg: Inbound) -> object:
    return ruleset.faq.match(View(msg, None, ruleset.prefilter), DEFAULT_LANGUAGE, _why)


def main() -> int:
    msgs = messages()
    with_prefilter = default_rules()
    without = default_rules()
    without.prefilter = None
    figures: dict[str, object] = {"benchmark": "rules", "messages": len(msgs)}
    for label, ruleset in (("with_prefilter", with_prefilter), ("without_prefilter", without)):
        figures[label] = {
            "decide_ms": best_ms_each(ruleset.decide, msgs),
            "faq_match_ms": best_ms_each(functools.partial(faq_match, ruleset), msgs),
            "searches_a_message": searches_each(ruleset, msgs),
        }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
