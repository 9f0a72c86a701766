"""Never an FAQ answer to a question it does not match: precision and recall of the default FAQ.

Reads ``../shared/corpus/intents/dev.csv`` (public customer-service sentences, each with the
dataset's own intent), sends every text through the real rule set as the body of a small email,
and looks at which FAQ topic, if any, would answer it. The default answers are empty (the owner
writes them), so for the measurement every entry gets a stand-in answer in memory.

Which dataset intents an FAQ topic is *for* (recall counts these), and which others it may also
answer correctly (precision accepts these too, recall does not ask for them):

- shipping: delivery options (where we ship, how); also delivery period ("how long does shipping take")
- returns: the refund policy; also refund requests ("I want my money back": the policy is the answer)
- payment: payment methods
- change: changing the shipping address or an order; also setting up a delivery address
- invoices: finding and getting invoices
- contact: reaching a person or customer service; opening hours: also customer service's hours

    .venv/bin/python -m bench.faq            # JSON
    .venv/bin/python -m bench.faq --table    # and a table; --misses lists what went wrong
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from supportd.decide.rules import RuleSet
from supportd.quality.intents import Example, as_email, default_rules, dev_set_arguments, read_examples

# topic -> (the dataset intents it answers, the ones it may also answer correctly)
TOPICS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "shipping": (frozenset({"delivery_options"}), frozenset({"delivery_period"})),
    "returns": (frozenset({"check_refund_policy"}), frozenset({"get_refund"})),
    "payment": (frozenset({"check_payment_methods"}), frozenset()),
    "change": (frozenset({"change_shipping_address", "change_order"}), frozenset({"set_up_shipping_address"})),
    "invoices": (frozenset({"check_invoice", "get_invoice"}), frozenset()),
    "contact": (frozenset({"contact_human_agent", "contact_customer_service"}), frozenset()),
    "opening_hours": (frozenset(), frozenset({"contact_customer_service"})),
    "sizes": (frozenset(), frozenset()),
}
TARGET_PRECISION, TARGET_RECALL = 0.97, 0.85
STAND_IN_ANSWER = "(the owner's answer)"


def faq_intents() -> frozenset[str]:
    """The dataset intents some FAQ topic is for."""
    return frozenset(intent for wanted, _ in TOPICS.values() for intent in wanted)


def is_right(topic: str, dataset_intent: str) -> bool:
    wanted, also = TOPICS.get(topic, (frozenset(), frozenset()))
    return dataset_intent in wanted or dataset_intent in also


def with_answers(rules: RuleSet) -> RuleSet:
    """The rule set with a stand-in answer in every FAQ entry (the defaults ship without any)."""
    entries = [e if e.filled else dataclasses.replace(e, answer=STAND_IN_ANSWER) for e in rules.faq.entries]
    return dataclasses.replace(rules, faq=dataclasses.replace(rules.faq, entries=entries))


def answered_topic(rules: RuleSet, text: str) -> str | None:
    entry = rules.decide(as_email(text)).faq_entry
    return entry.topic if entry else None


@dataclass(frozen=True)
class FaqMeasurement:
    answered: int
    answered_right: int
    asked: int  # utterances whose intent an FAQ topic is for
    asked_answered_right: int
    per_topic: dict[str, dict[str, int]]
    misses: list[tuple[Example, str | None]]

    @property
    def precision(self) -> float:
        return self.answered_right / self.answered if self.answered else 1.0

    @property
    def recall(self) -> float:
        return self.asked_answered_right / self.asked if self.asked else 1.0

    def failed_targets(self) -> list[str]:
        failed = []
        if self.precision < TARGET_PRECISION:
            failed.append(f"precision {self.precision:.1%} (target {TARGET_PRECISION:.0%})")
        if self.recall < TARGET_RECALL:
            failed.append(f"recall {self.recall:.1%} (target {TARGET_RECALL:.0%})")
        return failed

    def as_dict(self) -> dict[str, object]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "answered": self.answered, "answered_right": self.answered_right, "asked": self.asked,
                "asked_answered_right": self.asked_answered_right, "topics": self.per_topic,
                "targets_failed": self.failed_targets()}


def measure(examples: Sequence[Example], rules: RuleSet | None = None) -> FaqMeasurement:
    ruleset = with_answers(rules or default_rules())
    wanted = faq_intents()
    answered = answered_right = asked = asked_right = 0
    per_topic: dict[str, Counter[str]] = {topic: Counter() for topic in TOPICS}
    misses: list[tuple[Example, str | None]] = []
    for example in examples:
        topic = answered_topic(ruleset, example.text)
        right = topic is not None and is_right(topic, example.dataset_intent)
        if topic is not None:
            answered += 1
            answered_right += right
            per_topic.setdefault(topic, Counter())["answered"] += 1
            per_topic[topic]["right"] += right
        if example.dataset_intent in wanted:
            asked += 1
            asked_right += right
        if (topic is not None and not right) or (example.dataset_intent in wanted and not right):
            misses.append((example, topic))
    return FaqMeasurement(answered, answered_right, asked, asked_right,
                          {t: dict(c) for t, c in per_topic.items()}, misses)


def table(result: FaqMeasurement) -> str:
    lines = [f"{'topic':<16}{'answered':>9}{'right':>7}"]
    for topic, counts in result.per_topic.items():
        lines.append(f"{topic:<16}{counts.get('answered', 0):>9}{counts.get('right', 0):>7}")
    lines.append(f"precision {result.precision:.1%} ({result.answered_right}/{result.answered}), "
                 f"recall {result.recall:.1%} ({result.asked_answered_right}/{result.asked})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = dev_set_arguments(argv, __doc__, "also list the texts answered wrong or not at all")
    if args is None:
        return 2
    result = measure(read_examples(args.dev_set))
    print(json.dumps({"dev_set": str(args.dev_set), **result.as_dict()}, indent=2))
    if args.table:
        print(table(result))
    if args.misses:
        for example, topic in result.misses:
            print(f"{example.dataset_intent:>26} -> {topic or '-':<14} {example.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
