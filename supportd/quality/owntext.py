"""How well ``own_words`` finds the customer's own words in real replies, per test suite.

Reads ``../shared/corpus/replies/cases.jsonl``: the fixtures of dedicated reply parsers
(crisp-oss, github, zapier) with the visible text their own tests assert. A case passes when
every expected line is kept (a trailing sign-off of up to three short lines may be cut) and no
other line is left (no quote, reply header or signature). Partial cases name phrases that must be
kept and phrases that must be cut.

    .venv/bin/python -m bench.owntext              # JSON: passed / cases per suite
    .venv/bin/python -m bench.owntext --failures   # and each failing case, to read

``tests/test_owntext.py`` holds every suite to ``TARGET``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supportd.intake.owntext import own_words

REPO = Path(__file__).resolve().parents[2]
CASES = REPO.parent / "shared" / "corpus" / "replies" / "cases.jsonl"
TARGET = 0.95  # share of cases passed, per suite
MAX_CUT_SIGN_OFF_LINES = 3
MAX_SIGN_OFF_LINE_CHARS = 40


@dataclass(frozen=True)
class Outcome:
    suite: str
    fixture: str
    passed: bool
    problem: str
    got: str


def read_cases(path: Path = CASES) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _content_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def judge(case: dict[str, Any], got: str) -> str:
    """What is wrong with ``got`` for this case ('' when nothing is)."""
    got_lines = _content_lines(got)
    if "expected_own_text" not in case:
        lost = [phrase for phrase in case["must_keep"] if phrase not in got]
        left = [phrase for phrase in case["must_cut"] if phrase in got]
        quoted = [line for line in got_lines if line.startswith(">")]
        return "; ".join(f"{what}: {items}" for what, items in
                         (("lost", lost), ("left", left), ("quoted", quoted)) if items)
    expected = _content_lines(case["expected_own_text"])
    kept = set(got_lines)
    missing = [index for index, line in enumerate(expected) if line not in kept]
    if missing:
        cut_tail = expected[missing[0]:]
        tail_ok = (missing == list(range(missing[0], len(expected)))
                   and len(cut_tail) <= MAX_CUT_SIGN_OFF_LINES
                   and all(len(line) <= MAX_SIGN_OFF_LINE_CHARS for line in cut_tail)
                   and missing[0] > 0)
        if not tail_ok:
            return f"lost: {[expected[index] for index in missing]}"
    wanted = set(expected)
    left = [line for line in got_lines if line not in wanted]
    return f"left: {left}" if left else ""


def measure(cases: Sequence[dict[str, Any]]) -> list[Outcome]:
    outcomes = []
    for case in cases:
        got = own_words(case["input"])
        problem = judge(case, got)
        outcomes.append(Outcome(case["suite"], case["fixture"], not problem, problem, got))
    return outcomes


def per_suite(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float | int]]:
    suites: dict[str, dict[str, float | int]] = {}
    for name in sorted({outcome.suite for outcome in outcomes}):
        mine = [outcome for outcome in outcomes if outcome.suite == name]
        passed = sum(outcome.passed for outcome in mine)
        suites[name] = {"cases": len(mine), "passed": passed, "share": round(passed / len(mine), 4)}
    return suites


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="print each failing case")
    args = parser.parse_args(argv)
    if not CASES.exists():
        print(f"no reply cases at {CASES}", file=sys.stderr)
        return 2
    outcomes = measure(read_cases())
    if args.failures:
        for outcome in outcomes:
            if not outcome.passed:
                print(f"== {outcome.suite} {outcome.fixture}: {outcome.problem}\n{outcome.got}\n")
    print(json.dumps({"benchmark": "owntext", "target": TARGET, "suites": per_suite(outcomes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
