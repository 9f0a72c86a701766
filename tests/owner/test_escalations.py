"""Escalations: what needs a person reaches the owner at once, as its own email, once per cause per ticket."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

from supportd.base.clock import FakeClock

from conftest import OWNER, World, mail

START = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)  # a Tuesday morning
ADA = "Ada Lovelace <ada@example.org>"


def alerts(world: World) -> list[EmailMessage]:
    """The owner's alert emails (not the digest, not 'please do this by hand')."""
    return [m for m in world.sent_to(OWNER)
            if not subject_of(m).startswith(("[supportd] your week", "[supportd] please"))]


def subject_of(message: EmailMessage) -> str:
    """The subject as a mail client shows it (Python's parser keeps the space of a folded header)."""
    return str(message["Subject"]).strip()


def subjects(messages: list[EmailMessage]) -> list[str]:
    return [subject_of(m) for m in messages]


def reply_to(ours: EmailMessage, text: str, sender: str = ADA) -> bytes:
    quoted = "\n".join(f"> {line}" for line in ours.get_content().splitlines())
    return mail(f"{text}\n\nExample Shop wrote:\n{quoted}\n", sender=sender, subject=f"Re: {ours['Subject']}",
                headers={"In-Reply-To": ours["Message-ID"], "References": ours["Message-ID"]})


def test_angry_customer_alerts_the_owner_at_once(world: World) -> None:
    """'This is unacceptable!!!': the owner gets an alert now, with the customer's words; the customer an ack."""
    world.write_config()
    world.deliver(mail("This is unacceptable!!! The mug arrived broken.", sender=ADA, subject="Broken mug"))
    world.once(FakeClock(START))
    [alert] = alerts(world)
    assert subject_of(alert) == "[supportd] an upset customer (ticket 1001: Broken mug)"
    body = alert.get_content()
    assert "ada@example.org" in body and "This is unacceptable!!!" in body
    assert len(world.sent_to("ada@example.org")) == 1


def test_five_angry_mails_on_one_ticket_make_one_alert(world: World) -> None:
    """An upset customer writing five times on one ticket (over two passes and a restart) is one alert."""
    world.write_config()
    clock = FakeClock(START)
    world.deliver(mail("This is unacceptable!!! The mug arrived broken.", sender=ADA, subject="Broken mug"))
    world.once(clock)
    [ack] = world.sent_to("ada@example.org")
    for round_ in range(2):
        for n in range(2):
            world.deliver(reply_to(ack, f"Still nothing. Ridiculous!!! ({round_}{n})"))
        clock.advance(minutes=10)
        world.once(clock)
    assert subjects(alerts(world)) == ["[supportd] an upset customer (ticket 1001: Broken mug)"]
    assert len(world.sent_to("ada@example.org")) == 1  # follow-ups join the ticket: no more acks


def test_third_time_writing_alerts_the_owner(world: World) -> None:
    """'This is my third time writing' reaches the owner as 'writing again about the same thing'."""
    world.write_config()
    world.deliver(mail("This is my third time writing about my order 77120. Where is it?", sender=ADA,
                       subject="Order 77120"))
    world.once(FakeClock(START))
    assert subjects(alerts(world)) == [
        "[supportd] a customer writing again about the same thing (ticket 1001: Order 77120)"]


def test_angry_and_repeated_in_one_mail_are_one_alert_naming_both(world: World) -> None:
    """One mail that is upset and says it is not the first: one alert that names both causes."""
    world.write_config()
    world.deliver(mail("Third time writing. This is ridiculous!!! Where is my order?", sender=ADA,
                       subject="Order"))
    world.once(FakeClock(START))
    assert subjects(alerts(world)) == [
        "[supportd] an upset customer and a customer writing again about the same thing (ticket 1001: Order)",
    ]


def test_a_rule_with_escalate_alerts_the_owner_for_a_vip(world: World) -> None:
    """A `from:` rule with the `escalate` action alerts the owner for that sender, and only for them."""
    world.add_rule_file("15-vip.yaml", "intent: vip\npriority: 95\nreply: other\nactions: [open_ticket, escalate]\n"
                        "rules:\n  - name: big-client\n    from: ['*@bigclient.example']\n")
    world.deliver(mail("Could you send us the invoice for March?", sender="Bea <bea@bigclient.example>",
                       subject="Invoice"))
    world.deliver(mail("Could you send me the invoice for March?", sender=ADA, subject="Invoice"))
    world.once(FakeClock(START))
    [alert] = alerts(world)
    assert subject_of(alert) == "[supportd] a rule asked for you (ticket 1001: Invoice)"
    assert "big-client" in alert.get_content() and "bea@bigclient.example" in alert.get_content()
    assert len(world.sent_to("bea@bigclient.example")) == 1  # the VIP is acknowledged as well


def test_quarantined_message_alerts_the_owner(world: World) -> None:
    """A message supportd cannot handle is set aside, and the owner is told where it is."""
    world.write_config(limits={"max_message_bytes": 20_000})
    world.deliver(mail("x" * 30_000, sender=ADA, subject="Huge"))
    world.once(FakeClock(START))
    world.once(FakeClock(START + dt.timedelta(minutes=5)))
    [alert] = alerts(world)
    assert subject_of(alert) == "[supportd] a message supportd could not handle"
    assert "$SupportdQuarantined" in alert.get_content() or "marked" in alert.get_content()


def test_an_ordinary_question_alerts_nobody(world: World) -> None:
    """A calm question gets an acknowledgment and bothers the owner with nothing."""
    world.write_config()
    world.deliver(mail("Where is my order 77120?", sender=ADA))
    world.once(FakeClock(START))
    assert alerts(world) == []
