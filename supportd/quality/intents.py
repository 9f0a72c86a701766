"""How well the default rules read real customer questions: per-intent precision and recall.

Reads ``../shared/corpus/intents/dev.csv`` (a public customer-service dataset with our intent
mapped onto each utterance), sends every text through the real rule set as the body of a small
email (parsed by ``supportd.intake.message.parse``, so the rules see exactly what the daemon would), and
compares the primary intent with the label.

    .venv/bin/python -m bench.intents            # JSON
    .venv/bin/python -m bench.intents --table    # and a table to read

``tests/test_rules.py`` runs the same measurement and holds the defaults to the targets below.
"""

from __future__ import annotations

import argparse
import csv
import email.policy
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from supportd.decide.rules import RuleSet, load_rules
from supportd.deliver.replies import Replies
from supportd.intake.message import Inbound, parse

REPO = Path(__file__).resolve().parents[2]
DEV_SET = REPO.parent / "shared" / "corpus" / "intents" / "dev.csv"
# The dataset's names for our intents; the rest are ours already.
LABEL_TO_INTENT = {"unsubscribe_explicit": "unsubscribe"}
# The dataset's own intents that supportd reads as an intent of its own (the mapping says "other").
DATASET_INTENT_TO_INTENT = {"delete_account": "account_cancellation"}
# What the defaults must reach on the dev set (recall, precision), per intent.
TARGETS = {"cancellation": (0.96, 0.97), "delivery_status": (0.96, 0.97)}


@dataclass(frozen=True)
class Example:
    text: str
    dataset_intent: str
    expected: str


@dataclass(frozen=True)
class Score:
    intent: str
    expected: int
    predicted: int
    correct: int

    @property
    def recall(self) -> float:
        return self.correct / self.expected if self.expected else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0

    def as_dict(self) -> dict[str, float | int]:
        return {"expected": self.expected, "predicted": self.predicted, "correct": self.correct,
                "recall": round(self.recall, 4), "precision": round(self.precision, 4)}


def read_examples(path: Path = DEV_SET) -> list[Example]:
    """The rows of the dev set, with the label translated to our intent names."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [Example(row["text"], row["intent"],
                        DATASET_INTENT_TO_INTENT.get(row["intent"])
                        or LABEL_TO_INTENT.get(row["mapped_intent"], row["mapped_intent"]))
                for row in csv.DictReader(handle)]


def default_rules() -> RuleSet:
    """The repository's rules, checked against its replies folder, as the daemon loads them."""
    return load_rules(REPO / "rules", Replies(REPO / "replies").names())


def as_email(text: str) -> Inbound:
    """A customer email whose body is ``text`` and whose subject says nothing."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Customer <customer@example.org>"
    msg["To"] = "Shop <support@shop.example>"
    msg["Subject"] = ""
    msg["Message-ID"] = "<bench@example.org>"
    msg.set_content(text)
    return parse(msg.as_bytes())


def predict(rules: RuleSet, text: str) -> str:
    return rules.decide(as_email(text)).primary_intent


def score(pairs: Iterable[tuple[str, str]]) -> dict[str, Score]:
    """Per intent, from (expected, predicted) pairs."""
    expected: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for want, got in pairs:
        expected[want] += 1
        predicted[got] += 1
        correct[want] += want == got
    return {name: Score(name, expected[name], predicted[name], correct[name])
            for name in sorted(expected | predicted)}


@dataclass(frozen=True)
class Measurement:
    scores: dict[str, Score]
    misses: list[tuple[Example, str]]

    def failed_targets(self) -> list[str]:
        """The targets not met, as sentences; empty when all are."""
        failed = []
        for intent, (recall, precision) in TARGETS.items():
            got = self.scores[intent]
            if got.recall < recall or got.precision < precision:
                failed.append(f"{intent}: recall {got.recall:.1%} (target {recall:.0%}), "
                              f"precision {got.precision:.1%} (target {precision:.0%})")
        return failed


def measure(examples: Sequence[Example], rules: RuleSet | None = None) -> Measurement:
    """Every example through the rules: the scores, and each example that was read wrong."""
    ruleset = rules or default_rules()
    pairs = [(example, predict(ruleset, example.text)) for example in examples]
    return Measurement(score((example.expected, got) for example, got in pairs),
                       [(example, got) for example, got in pairs if got != example.expected])


def table(measurement: Measurement) -> str:
    lines = [f"{'intent':<18}{'expected':>9}{'predicted':>10}{'correct':>8}{'recall':>8}{'precision':>10}"]
    for s in measurement.scores.values():
        lines.append(f"{s.intent:<18}{s.expected:>9}{s.predicted:>10}{s.correct:>8}"
                     f"{s.recall:>8.1%}{s.precision:>10.1%}")
    return "\n".join(lines)


def dev_set_arguments(argv: Sequence[str] | None, doc: str | None, misses: str) -> argparse.Namespace | None:
    """--dev-set, --table and --misses; None (after saying why) when the dev set is not there."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--dev-set", type=Path, default=DEV_SET, help="the CSV (text, intent, mapped_intent)")
    parser.add_argument("--table", action="store_true", help="also print a table to read")
    parser.add_argument("--misses", action="store_true", help=misses)
    args = parser.parse_args(argv)
    if not args.dev_set.is_file():
        print(f"no dev set at {args.dev_set} (the shared corpus sits beside the repository)", file=sys.stderr)
        return None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = dev_set_arguments(argv, __doc__, "also list the texts read wrong")
    if args is None:
        return 2
    result = measure(read_examples(args.dev_set))
    print(json.dumps({"dev_set": str(args.dev_set), "intents": {k: v.as_dict() for k, v in result.scores.items()},
                      "targets_failed": result.failed_targets()}, indent=2))
    if args.table:
        print(table(result))
    if args.misses:
        for example, got in result.misses:
            print(f"{example.expected:>16} <- {got:<16} {example.dataset_intent:<24} {example.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
