"""Tickets: promises kept. `supportd tickets` lists them; `supportd resolve` closes one and says so.

Against a real Dovecot and a real SMTP server; the commands run through ``supportd.service.cli.main`` as
the owner types them.
"""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage
from typing import Any

import pytest

from supportd.base.clock import FakeClock
from supportd.service import cli

from conftest import World, mail

ADA = "Ada Lovelace <ada@example.org>"


def run(world: World, *args: str) -> int:
    return cli.main([*args, "--config", str(world.config_path)])


def tickets(world: World) -> dict[int, dict[str, Any]]:
    return world.tickets()


def reply_to(ours: EmailMessage, text: str, sender: str = ADA) -> bytes:
    """The customer answers one of our mails from their mail client (threaded, quoting it)."""
    quoted = "\n".join(f"> {line}" for line in ours.get_content().splitlines())
    return mail(f"{text}\n\nExample Shop wrote:\n{quoted}\n", sender=sender, subject=f"Re: {ours['Subject']}",
                headers={"In-Reply-To": ours["Message-ID"], "References": ours["Message-ID"]})


def defect_ticket(world: World) -> tuple[int, EmailMessage]:
    """A customer reports a broken vase; returns the ticket number and our acknowledgment."""
    world.write_config()
    world.deliver(mail("The vase arrived broken.", sender=ADA, subject="Broken vase",
                       message_id="<vase@example.org>"))
    world.once()
    [ack] = world.sent_to("ada@example.org")
    [number] = tickets(world)
    return number, ack


def test_resolve_tells_the_customer_personally_and_closes_the_ticket(world: World) -> None:
    """`supportd resolve N --message ...` sends a threaded 'sorted' mail with the owner's words and closes N."""
    number, _ = defect_ticket(world)
    assert run(world, "resolve", str(number), "--message", "A new vase is on its way, tracking 00340.") == 0
    sorted_mail = world.sent_to("ada@example.org")[-1]
    assert str(sorted_mail["Subject"]) == f"Re: Broken vase [#{number}]"
    assert sorted_mail["In-Reply-To"] == "<vase@example.org>"
    assert "<vase@example.org>" in sorted_mail["References"]
    assert sorted_mail["Auto-Submitted"] == "no"  # a person's answer, not an automatic one
    text = sorted_mail.get_content()
    assert "it is sorted" in text and "A new vase is on its way, tracking 00340." in text
    assert "Thank you again" in text
    assert tickets(world)[number]["state"] == "closed"


def test_customer_reply_to_the_sorted_mail_reopens_without_a_new_acknowledgment(world: World) -> None:
    """'Still broken' in answer to 'it is sorted' opens the ticket again; the customer gets no second ack."""
    number, _ = defect_ticket(world)
    run(world, "resolve", str(number))
    sorted_mail = world.sent_to("ada@example.org")[-1]
    world.deliver(reply_to(sorted_mail, "The new one is broken too."))
    world.once()
    assert len(world.sent_to("ada@example.org")) == 2  # the acknowledgment and 'sorted', nothing new
    ticket = tickets(world)[number]
    assert ticket["state"] == "open" and ticket["reopened"] == 1 and ticket["due"]


def test_resolving_again_after_a_reopen_sends_a_new_message(world: World) -> None:
    """A ticket resolved, reopened and resolved again tells the customer twice (two different mails)."""
    number, _ = defect_ticket(world)
    run(world, "resolve", str(number))
    world.deliver(reply_to(world.sent_to("ada@example.org")[-1], "Still broken."))
    world.once()
    run(world, "resolve", str(number), "--message", "Refunded.")
    sorted_mails = world.sent_to("ada@example.org")[1:]
    assert len(sorted_mails) == 2
    assert sorted_mails[0]["Message-ID"] != sorted_mails[1]["Message-ID"]
    assert "Refunded." in sorted_mails[1].get_content()


def test_quiet_resolve_closes_without_writing(world: World) -> None:
    """--quiet closes the ticket and sends the customer nothing."""
    number, _ = defect_ticket(world)
    assert run(world, "resolve", str(number), "--quiet") == 0
    assert len(world.sent_to("ada@example.org")) == 1
    assert tickets(world)[number]["state"] == "closed"


@pytest.mark.parametrize("ticket", ["9999", "#9999", "abc"])
def test_resolve_of_an_unknown_ticket_fails_and_sends_nothing(world: World, ticket: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped ticket number is an error (exit 1) with a hint, and nobody gets mail."""
    defect_ticket(world)
    before = len(world.sent())
    assert run(world, "resolve", ticket) == 1
    assert len(world.sent()) == before
    assert "supportd tickets" in capsys.readouterr().err


def test_resolving_a_closed_ticket_sends_nothing_twice(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Typing the same resolve twice tells the customer once."""
    number, _ = defect_ticket(world)
    run(world, "resolve", str(number))
    assert run(world, "resolve", str(number)) == 1
    assert len(world.sent_to("ada@example.org")) == 2
    assert "already closed" in capsys.readouterr().err


def test_tickets_lists_open_ones_overdue_first_with_age(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """`supportd tickets`: the overdue ticket from three days ago first, with its age, then today's."""
    world.write_config()
    three_days_ago = FakeClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=3, hours=1))
    world.deliver(mail("The lamp does not work.", sender="old@example.org", subject="Lamp"))
    world.once(three_days_ago)
    world.deliver(mail("The vase arrived broken.", sender="new@example.org", subject="Vase"))
    world.once()
    capsys.readouterr()
    assert run(world, "tickets") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "old@example.org" in lines[0] and "OVERDUE" in lines[0] and "open 3 days" in lines[0]
    assert "new@example.org" in lines[1] and "OVERDUE" not in lines[1] and "due " in lines[1]
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d", "\n".join(lines))  # human dates, no ISO timestamps


def test_tickets_says_so_when_nothing_is_open(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """With every ticket closed, `supportd tickets` says there is nothing open."""
    number, _ = defect_ticket(world)
    run(world, "resolve", str(number), "--quiet")
    capsys.readouterr()
    assert run(world, "tickets") == 0
    assert capsys.readouterr().out.strip() == "no open tickets"


def test_ticket_overdue_for_three_months_is_set_aside_and_reopens_on_a_reply(world: World) -> None:
    """A ticket chased and overdue for over 90 days leaves the open list (the digest names it); a reply reopens it."""
    clock = FakeClock(dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC))
    world.deliver(mail("My vase arrived broken.", subject="Broken vase", message_id="<vase@example.org>"))
    world.once(clock)
    [ack] = world.sent_to("ada@example.org")
    number = int(re.search(r"\[#(\d+)\]", str(ack["Subject"])).group(1))  # type: ignore[union-attr]
    clock.advance(days=92)
    world.once(clock)
    assert tickets(world)[number]["state"] == "closed" and tickets(world)[number]["outcome"] == "stale"
    assert run(world, "tickets") == 0
    world.deliver(reply_to(ack, "Any news about my vase?"))
    world.once(clock)
    ticket = tickets(world)[number]
    assert ticket["state"] == "open" and ticket["reopened"] == 1
