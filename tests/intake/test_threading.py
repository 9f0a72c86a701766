"""A customer's follow-up joins its ticket and gets no second acknowledgment; a tag from a stranger does not."""

from __future__ import annotations

import re
from email.message import EmailMessage

from conftest import World, mail

ADA = "Ada Lovelace <ada@example.org>"


def first_acknowledgment(world: World) -> tuple[EmailMessage, int]:
    world.deliver(mail("Hello, my order 77120 has not arrived yet.", sender=ADA, subject="Where is my order?",
                       message_id="<first@example.org>"))
    world.once()
    [ack] = world.sent_to("ada@example.org")
    tag = re.search(r"\[#(\d+)\]", ack["Subject"])
    assert tag is not None
    return ack, int(tag.group(1))


def test_reply_to_our_acknowledgment_joins_the_ticket(world: World) -> None:
    """Answering our acknowledgment adds to the ticket; no second acknowledgment goes out."""
    ack, number = first_acknowledgment(world)
    world.deliver(mail("Thanks! Here is a photo of the shipping label.", sender=ADA, subject=ack["Subject"],
                       headers={"In-Reply-To": ack["Message-ID"],
                                "References": f"<first@example.org> {ack['Message-ID']}"}))
    report = world.once()
    assert len(world.sent_to("ada@example.org")) == 1
    [plan] = report.plans
    assert plan["ticket"] == number
    assert plan["skip_reason"].startswith("follow-up: joins ticket")


def test_new_mail_with_the_ticket_tag_from_the_same_sender_joins(world: World) -> None:
    """A fresh email whose subject carries [#N], from the ticket's customer, joins that ticket."""
    _, number = first_acknowledgment(world)
    world.deliver(mail("One more thing: the parcel should go to my office.", sender="Ada <ADA@example.org>",
                       subject=f"Delivery address [#{number}]"))
    report = world.once()
    assert len(world.sent_to("ada@example.org")) == 1
    assert report.plans[0]["ticket"] == number


def test_ticket_tag_from_another_sender_is_not_honoured(world: World) -> None:
    """Anyone can type [#N]: a stranger's mail with Ada's tag opens its own ticket and gets its own answer."""
    _, number = first_acknowledgment(world)
    world.deliver(mail("Where is my order 77130?", sender="Mallory <mallory@example.net>",
                       subject=f"Re: Where is my order? [#{number}]"))
    report = world.once()
    [reply] = world.sent_to("mallory@example.net")
    assert f"[#{number}]" not in reply["Subject"]
    assert report.plans[0]["ticket"] != number


def test_made_up_reference_to_our_domain_is_not_honoured(world: World) -> None:
    """Our Message-IDs are signed: a guessed one does not make a stranger's mail part of a ticket."""
    _, number = first_acknowledgment(world)
    world.deliver(mail("Where is my parcel?", sender="Mallory <mallory@example.net>", subject="My parcel",
                       headers={"In-Reply-To": f"<ack.{number}@shop.example>"}))
    report = world.once()
    assert len(world.sent_to("mallory@example.net")) == 1
    assert report.plans[0]["ticket"] != number


def test_several_follow_ups_never_earn_an_acknowledgment(world: World) -> None:
    """Three more mails on the ticket, by reply and by tag: still exactly one acknowledgment."""
    ack, number = first_acknowledgment(world)
    for n in range(3):
        world.deliver(mail(f"Follow-up number {n}.", sender=ADA, subject=f"Re: Where is my order? [#{number}]",
                           headers={"In-Reply-To": ack["Message-ID"]} if n % 2 else None))
    world.once()
    assert len(world.sent_to("ada@example.org")) == 1
