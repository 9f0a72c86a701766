"""A bounded cost per message: hostile text is decided quickly, and a message that is still too slow
is set aside for the owner while the queue goes on (end to end against Dovecot and aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

from supportd.act.pending import TOKEN_IN_TEXT
from supportd.base.clock import FakeClock
from supportd.decide.budget import DecisionTimeout, decision_budget
from supportd.decide.rules import DEFAULT_ORDER_NUMBER, sentence_around
from supportd.intake.message import MAX_SPACE_RUN, parse, tame

from conftest import OWNER, World, mail

START = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)


def test_the_budget_interrupts_a_runaway_pattern() -> None:
    """A catastrophic pattern inside the budget raises DecisionTimeout after the limit, not minutes later."""
    started = time.monotonic()
    with pytest.raises(DecisionTimeout), decision_budget(0.3):
        re.search(r"(a+)+$", "a" * 40 + "!")
    assert time.monotonic() - started < 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped first alarm
def test_the_budget_still_interrupts_when_its_first_alarm_lands_in_a_finalizer() -> None:
    """A time-out raised while Python runs a __del__ is dropped by Python; the budget raises again."""

    class SlowToFinalize:
        def __del__(self) -> None:
            ends = time.monotonic() + 0.3  # the 0.1 s alarm goes off in here, and is dropped
            while time.monotonic() < ends:
                pass

    ends = time.monotonic() + 5.0  # bounded: without a second alarm the block just runs out
    with pytest.raises(DecisionTimeout), decision_budget(0.1):
        SlowToFinalize()
        while time.monotonic() < ends:
            pass


def test_long_whitespace_runs_are_tamed_but_paragraphs_kept() -> None:
    """40,000 spaces become one; a long run with two line breaks stays a paragraph break."""
    assert tame("about my order" + " " * 40_000 + "77120") == "about my order 77120"
    assert tame("first" + " \n" * 500 + "second") == "first\n\nsecond"
    assert "  " * MAX_SPACE_RUN not in tame("x" + "\t" * 10_000)


def test_the_patterns_on_customer_text_stay_fast_on_whitespace() -> None:
    """The order-number and token patterns: 'order' or 'confirm' and 200,000 spaces in well under a second."""
    started = time.monotonic()
    assert re.search(DEFAULT_ORDER_NUMBER, "about my order" + " " * 200_000, re.IGNORECASE) is None
    assert TOKEN_IN_TEXT.search("please confirm" + " " * 200_000) is None
    assert time.monotonic() - started < 1


def test_a_sentence_without_an_end_is_bounded_around_its_hit() -> None:
    """In 2 MB with no full stop, the sentence around a hit is at most a few hundred characters each side."""
    text = "please cancel my order and " * 75_000
    sentence, start, end = sentence_around(text, 1_000_000, 1_000_006)
    assert len(sentence) <= 1_300 and sentence[start:end] == text[1_000_000:1_000_006]


def test_a_file_name_beyond_what_the_parser_reads_is_still_seen() -> None:
    """A program attached after 20 MB of padding is still among the attachment names (the guard sees it)."""
    raw = (b"From: eve@example.org\r\nTo: support@shop.example\r\nSubject: invoice\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
           b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + b"A" * 20_000_000
           + b'\r\n--b\r\nContent-Disposition: attachment; filename="invoice.exe"\r\n\r\nTVqQ\r\n--b--\r\n')
    msg = parse(raw)
    assert "invoice.exe" in msg.attachment_names and msg.own_text.startswith("see attached")


def test_a_message_too_slow_to_decide_is_set_aside_and_the_queue_goes_on(world: World) -> None:
    """An owner's runaway regex on one mail: that mail is quarantined at once, the owner told, the next answered."""
    world.add_rule_file("15-slow.yaml", "intent: slow\npriority: 95\nreply: other\nactions: [open_ticket]\n"
                        "rules:\n  - name: runaway\n    text: {regex: '(a+)+$'}\n")
    world.write_config(limits={"decision_seconds": 0.5})
    world.deliver(mail("a" * 40 + "!", sender="eve@example.org", subject="Slow"))
    world.deliver(mail("Where is my order 77120?", subject="Parcel"))
    started = time.monotonic()
    report = world.once(FakeClock(START))
    assert time.monotonic() - started < 30
    assert report.quarantined == 1
    assert len(world.sent_to("ada@example.org")) == 1 and world.sent_to("eve@example.org") == []
    [alert] = world.sent_to(OWNER)
    assert "limits.decision_seconds" in alert.get_content()
    assert any(b"$SupportdQuarantined" in flags for flags in world.flags().values())
