"""Mail to the owner: escalations that need a person now, and changes to make by hand.

One escalation per cause per ticket (or per message, when there is no ticket): a customer who
writes five angry mails produces one alert, not five.
"""

from __future__ import annotations

from supportd.clock import iso
from supportd.context import Context
from supportd.ledger import Doc
from supportd.outbox import Outgoing, compose

CAUSES = {
    "angry": "an upset customer",
    "repeat": "a customer writing again about the same thing",
    "overdue": "a promised answer is overdue",
    "confirmation-unclear": "a confirmation we could not read",
    "confirmation-refused": "a customer said no to a change",
    "wrong-sender": "a confirmation from the wrong address (refused)",
    "quarantined": "a message supportd could not handle",
    "rule": "a rule asked for you",
    "smtp-failed": "a reply the mail server refused for good",
    "outbox-stuck": "replies waiting for the mail server for hours",
    "action-failed": "a confirmed change that could not be made",
    "rules-broken": "the rule files have an error",
    "bad-tokens": "repeated invalid confirmation codes",
}


def already_escalated(ctx: Context, cause: str, subject_key: str) -> bool:
    return ctx.ledger.get("escalations", key=f"{cause}:{subject_key}") is not None


def mark_escalated(ctx: Context, cause: str, subject_key: str) -> None:
    ctx.ledger.put("escalations", "key", {"key": f"{cause}:{subject_key}", "cause": cause,
                                          "at": iso(ctx.now())})
    ctx.ledger.record("escalation", f"{cause}:{subject_key}", cause=cause)


def escalation(ctx: Context, *, cause: str, subject_key: str, details: str, ticket: Doc | None = None,
               customer: str = "", customer_name: str = "") -> Outgoing | None:
    """The owner's alert for ``cause`` about ``subject_key``, or None when already sent."""
    if already_escalated(ctx, cause, subject_key):
        return None
    title = CAUSES.get(cause, cause)
    number = ticket["number"] if ticket else None
    subject = f"[supportd] {title}" + (f" (ticket {number}: {ticket['subject'][:60]})" if ticket else "")
    return compose(
        ctx, kind="owner", template="owner_escalation",
        values={"action": title, "details": details, "customer": customer_name or customer,
                "email": customer, "ticket": number, "subject": ticket["subject"] if ticket else ""},
        to=ctx.config.shop.owner_address, subject=subject, ref=str(number or 0),
        basis=f"escalation:{cause}:{subject_key}", ticket=number, auto_submitted="auto-generated",
    )
