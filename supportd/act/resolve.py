"""``supportd resolve``: close a ticket and tell the customer, personally, that it is sorted."""

from __future__ import annotations

from dataclasses import dataclass

from supportd.act import tickets
from supportd.decide import hours
from supportd.deliver.outbox import Answering, Letter, MailKey, compose, queue
from supportd.deliver.replies import first_name, reply_subject
from supportd.intake.message import Address
from supportd.service.context import Context


@dataclass(frozen=True)
class Resolution:
    """What ``resolve`` did, in a sentence for the owner; ``done`` is False when nothing changed."""

    done: bool
    text: str


def resolve_ticket(ctx: Context, number: int, message: str = "", tell_customer: bool = True) -> Resolution:
    """Close ticket ``number``; queue the personal 'sorted' mail unless told not to."""
    ticket = tickets.lookup(ctx, number)
    if ticket is None:
        return Resolution(False, f"there is no ticket {number} (the open ones: supportd tickets)")
    if ticket["state"] != tickets.OPEN:
        return Resolution(False, f"ticket {number} is already closed; nothing was sent")
    tickets.close(ctx, number, "resolved", told=tell_customer)
    reopened = int(ticket.get("reopened", 0))
    if not tell_customer:
        return Resolution(True, f"closed ticket {number} without writing to {ticket['customer']}")
    thread = ticket.get("thread") or []
    due = hours.due_time(ctx.now(), ctx.config.hours)
    values = {
        "name": first_name(ticket.get("name", "")), "customer": ticket.get("name") or ticket["customer"],
        "email": ticket["customer"], "ticket": number, "ticket_tag": f"[#{number}]",
        "subject": ticket["subject"], "intent": ticket["intent"], "message": message.strip(),
        "eta": hours.describe_eta(due, ctx.now(), ctx.config.hours, ticket.get("language", "")),
        "language": ticket.get("language"),
    }
    queue(ctx, compose(
        ctx, MailKey("resolved", str(number), f"resolved:{reopened}"),
        to=Address(ticket.get("name", ""), ticket["customer"]),
        letter=Letter(reply_subject(ticket["subject"], number), "resolved", values),
        answering=Answering.thread(thread), ticket=number, auto_submitted="no",  # a person's words
    ))
    return Resolution(True, f"closed ticket {number}; told {ticket['customer']} it is sorted")
