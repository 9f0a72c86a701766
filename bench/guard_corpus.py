"""Which guard check catches which robots of the shared corpus (a measurement, not a test).

For every message of ``../shared/corpus/labels.csv`` with the given labels (default: bounce,
auto-reply, list, feedback-report), the support address is set to the message's own recipient
(Delivered-To, else To), as ``supportd try --address`` would, so "not addressed to us" cannot hide
a missing robot sign. Prints JSON: per label, how many messages, the first check that holds the
reply back (what ``skip_reason`` names), every check that would hold it, and the messages that
only the mailbox checks (own address, not addressed to us) or nothing at all hold back.

    .venv/bin/python bench/guard_corpus.py
    .venv/bin/python bench/guard_corpus.py normal spam
"""

from __future__ import annotations

import collections
import csv
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_json
from supportd.base.config import offline_config
from supportd.decide import guard
from supportd.intake.message import Inbound, parse

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
ROBOT_LABELS = ("bounce", "auto-reply", "list", "feedback-report")


def own_recipient(msg: Inbound) -> str:
    found = [*msg.delivered_to, *(a.key for a in msg.to)]
    return found[0] if found else "support@shop.example"


def measure(labels: tuple[str, ...]) -> dict[str, Any]:
    robot_senders = offline_config().robot_senders
    first: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    per_label: collections.Counter[str] = collections.Counter()
    only_mailbox: list[str] = []
    with (CORPUS / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["label"] in labels]
    for row in rows:
        msg = parse((CORPUS / row["path"]).read_bytes())
        settings = guard.GuardSettings(own_addresses=frozenset({own_recipient(msg)}), robot_senders=robot_senders)
        found = guard.findings(msg, settings)
        per_label[row["label"]] += 1
        first[found[0].check if found else "allowed"] += 1
        anywhere.update({v.check for v in found})
        if not [v for v in found if v.check not in guard.MAILBOX_CHECKS]:
            only_mailbox.append(f"{row['label']}: {row['path']} ({', '.join(v.check for v in found) or 'allowed'})")
    return {"corpus": str(CORPUS), "labels": dict(per_label), "messages": len(rows),
            "first_check": dict(first.most_common()), "any_check": dict(anywhere.most_common()),
            "held_only_by_mailbox_checks_or_allowed": only_mailbox}


def main() -> None:
    labels = tuple(sys.argv[1:]) or ROBOT_LABELS
    print_json(measure(labels))


if __name__ == "__main__":
    main()
