"""What composing a reply costs: rendering its template, then writing its bytes.

The replies are those supportd plans for the backlog's customer mails (``bench.common.customer_mail``,
the same as ``bench/backlog.py`` sends) and, when ``../shared/corpus`` is there, for the first texts
of its intents set: each is planned once (not timed), and the arguments of each reply are kept. Then,
best of 5 rounds over all of them, milliseconds a reply for

* ``compose_ms``: ``outbox.compose`` as the pipeline calls it (render, Message-ID, bytes);
* ``render_ms``: the template alone;
* ``bytes_ms``: ``email_bytes`` (the bytes written directly);
* ``email_package_ms``: ``build_email(...).as_bytes()``, the way the bytes were written before.

    .venv/bin/python -m bench.compose          # JSON
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, customer_mail
from supportd.base.clock import FakeClock
from supportd.base.config import offline_config
from supportd.decide import actions
from supportd.decide.actions import plan_message
from supportd.deliver import outbox
from supportd.deliver.replies import UTF8_HEADERS, Draft, build_email, email_bytes
from supportd.intake.message import parse
from supportd.service.context import Context
from supportd.service.ownerfiles import load_rules_and_replies
from supportd.state.ledger import Ledger

ROUNDS = 5
BACKLOG_MAILS = 600
CORPUS_TEXTS = 400
INTENTS = REPO.parent / "shared" / "corpus" / "intents" / "dev.csv"


def context() -> Context:
    """A Context as ``supportd try`` builds it: the default rules and replies, an empty ledger."""
    config = offline_config("support@shop.example")
    rules, replies = load_rules_and_replies(config)
    clock = FakeClock(dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC))  # a Tuesday morning, in business hours
    return Context(config=config, rules=rules, replies=replies, ledger=Ledger.in_memory(clock), clock=clock,
                   secret=b"bench-secret-" * 3)


def mails() -> Iterator[bytes]:
    for number in range(BACKLOG_MAILS):
        yield customer_mail(number)
    if INTENTS.is_file():
        with INTENTS.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(itertools.islice(csv.DictReader(handle), CORPUS_TEXTS)):
                yield customer_text_mail(number, row["text"])


def customer_text_mail(number: int, text: str) -> bytes:
    raw = customer_mail(number, tag="intents")
    head, _, _ = raw.partition(b"\r\n\r\n")
    head = head.replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: 8bit")
    return head + b"\r\n\r\n" + text.encode("utf-8") + b"\r\n"


def planned_replies(ctx: Context) -> tuple[list[tuple[tuple[Any, ...], dict[str, Any]]], list[Draft]]:
    """The arguments of every ``compose`` call and the ``Draft`` of every ``email_bytes`` while planning the
    mails (each planned with a fresh ledger, so that no per-sender cap cuts them short)."""
    composed: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    written: list[Draft] = []
    real_compose, real_bytes = actions.compose, outbox.email_bytes

    def recording_compose(*args: Any, **kwargs: Any) -> outbox.Outgoing:
        composed.append((args, kwargs))
        return real_compose(*args, **kwargs)

    def recording_bytes(draft: Draft) -> bytes:
        written.append(draft)
        return real_bytes(draft)

    actions.compose, outbox.email_bytes = recording_compose, recording_bytes  # type: ignore[assignment]
    try:
        for raw in mails():
            ctx.ledger = Ledger.in_memory(ctx.clock)
            plan_message(ctx, parse(raw), key=None)
    finally:
        actions.compose, outbox.email_bytes = real_compose, real_bytes  # type: ignore[assignment]
    return composed, written


def per_reply_ms(run: Callable[[], object], count: int) -> float:
    """Best of ``ROUNDS`` runs, in milliseconds a reply."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(min(times) * 1000 / count, 4)


def by_the_email_package(draft: Draft) -> bytes:
    msg = build_email(draft)
    return msg.as_bytes() if draft.to.email.isascii() else msg.as_bytes(policy=UTF8_HEADERS)


def main() -> int:
    ctx = context()
    composed, written = planned_replies(ctx)
    replies = ctx.replies
    renders = [(kwargs["letter"].template, {"shop": ctx.config.shop.name, "footer": ctx.config.shop.contact_footer,
                                            **kwargs["letter"].values}) for _, kwargs in composed]
    count = len(written)
    print(json.dumps({
        "benchmark": "compose",
        "replies": count,
        "compose_ms": per_reply_ms(lambda: [outbox.compose(*a, **k) for a, k in composed], count),
        "render_ms": per_reply_ms(lambda: [replies.render(name, values) for name, values in renders], count),
        "bytes_ms": per_reply_ms(lambda: [email_bytes(draft) for draft in written], count),
        "email_package_ms": per_reply_ms(lambda: [by_the_email_package(draft) for draft in written], count),
        "mean_reply_bytes": round(sum(len(email_bytes(draft)) for draft in written) / count),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
