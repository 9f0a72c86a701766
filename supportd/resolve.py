"""``supportd resolve``: close a ticket and tell the customer, personally, that it is sorted."""

from __future__ import annotations

from supportd import hours, tickets
from supportd.context import Context
from supportd.outbox import compose, queue
from supportd.replies import first_name, reply_subject


def resolve_ticket(ctx: Context, number: int, message: str = "", tell_customer: bool = True) -> str:
    """Close ticket ``number``; queue the 'sorted' mail unless told not to. Returns what was done."""
    ticket = ctx.ledger.get("tickets", number=number)
    if ticket is None:
        return f"no ticket {number}"
    tickets.close(ctx, number)
    ctx.ledger.record("ticket", str(number), outcome="resolved", opened=ticket["opened"],
                      intent=ticket["intent"], customer=ticket["customer"])
    if not tell_customer:
        return f"closed ticket {number} without writing to {ticket['customer']}"
    thread = ticket.get("thread") or []
    due = hours.due_time(ctx.now(), ctx.config.hours)
    values = {
        "name": first_name(ticket.get("name", "")), "customer": ticket.get("name") or ticket["customer"],
        "email": ticket["customer"], "ticket": number, "ticket_tag": f"[#{number}]",
        "subject": ticket["subject"], "intent": ticket["intent"], "message": message.strip(),
        "eta": hours.describe_eta(due, ctx.now(), ctx.config.hours),
    }
    resolutions = int(ticket.get("reopened", 0))
    queue(ctx, compose(
        ctx, kind="resolved", template="resolved", values=values, to=ticket["customer"],
        to_name=ticket.get("name", ""), subject=reply_subject(ticket["subject"], number), ref=str(number),
        basis=f"resolved:{resolutions}", in_reply_to=thread[-1] if thread else "", references=thread,
        ticket=number, auto_submitted="no",
    ))
    return f"closed ticket {number}; told {ticket['customer']} it is sorted"
