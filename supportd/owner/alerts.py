"""Mail to the owner: escalations that need a person now, and changes to make by hand.

One escalation per cause per ticket (or per message, when there is no ticket): a customer who
writes five angry mails produces one alert, not five.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

from supportd.base.clock import iso
from supportd.deliver.outbox import Letter, MailKey, Outgoing, compose
from supportd.intake.message import Address
from supportd.service.context import Context
from supportd.state.ledger import Doc

CAUSES = {
    "angry": "an upset customer",
    "repeat": "a customer writing again about the same thing",
    "overdue": "a promised answer is overdue",
    "confirmation-unclear": "a confirmation we could not read",
    "confirmation-refused": "a customer said no to a change",
    "wrong-sender": "a confirmation from the wrong address (refused)",
    "quarantined": "a message supportd could not handle",
    "rule": "a rule asked for you",
    "carrier-says-delivered": "a parcel the carrier says was delivered, and the customer has not got",
    "smtp-failed": "a reply the mail server refused for good",
    "outbox-stuck": "replies waiting for the mail server for hours",
    "action-failed": "a confirmed change that could not be made",
    "rules-broken": "the rule files have an error",
    "config-broken": "the edited config file has an error",
    "imap-login": "supportd cannot log in to the support mailbox",
    "state-broken": "supportd cannot use its state folder and has stopped",
    "smtp-login": "supportd cannot log in to the mail server to send replies",
    "bad-tokens": "repeated invalid confirmation codes",
    "faq-unhelpful": "a customer said an FAQ answer did not help",
    "command-refused": "an answer to your alert from another address (refused)",
    "flood": "too many messages for one address today (replies stopped)",
    "untrusted-from": "a message whose From cannot be trusted",
    "not-owner": "a change asked for an order that is not the sender's (nothing held)",
}


def already_escalated(ctx: Context, cause: str, subject_key: str) -> bool:
    return ctx.ledger.get("escalations", key=f"{cause}:{subject_key}") is not None


def mark_escalated(ctx: Context, cause: str, subject_key: str, channel: str = "mail", mail: str = "") -> None:
    """Remember the alert; ``channel`` is how it reaches the owner ("mail", or "mailbox" when SMTP refused us);
    ``mail`` the alert's Message-ID, which the causes one mail names together share (the digest counts mails)."""
    ctx.ledger.put("escalations", "key", {"key": f"{cause}:{subject_key}", "cause": cause,
                                          "at": iso(ctx.now())})
    ctx.ledger.record("escalation", f"{cause}:{subject_key}", cause=cause, channel=channel,
                      **({"mail": mail} if mail else {}))


def alert(ctx: Context, *, cause: str, subject_key: str, details: str, ticket: Doc | None = None,
          customer: str = "", customer_name: str = "") -> Outgoing | None:
    """Compose, queue and remember the owner's alert for ``cause`` (None when it was sent before)."""
    from supportd.deliver.outbox import queue

    mail = escalation(ctx, cause=cause, subject_key=subject_key, details=details, ticket=ticket,
                      customer=customer, customer_name=customer_name)
    if mail is not None:
        queue(ctx, mail)
        mark_escalated(ctx, cause, subject_key, mail=mail.message_id)
    return mail


def escalation(ctx: Context, *, cause: str, subject_key: str, details: str, ticket: Doc | None = None,
               customer: str = "", customer_name: str = "", also: Sequence[str] = ()) -> Outgoing | None:
    """The owner's alert for ``cause`` (and the causes ``also`` of the same message) about
    ``subject_key``, or None when already sent. One mail for one message, however many causes."""
    if already_escalated(ctx, cause, subject_key):
        return None
    title = " and ".join(CAUSES.get(c, c) for c in (cause, *also))
    number = ticket["number"] if ticket else None
    subject = f"[supportd] {title}" + (f" (ticket {number}: {ticket['subject'][:60]})" if ticket else "")
    values = {"action": title, "details": details, "customer": customer_name or customer,
              "email": customer, "ticket": number, "subject": ticket["subject"] if ticket else ""}
    return compose(
        ctx, MailKey("owner", str(number or 0), f"escalation:{cause}:{subject_key}"),
        to=Address("", ctx.config.shop.owner_address), letter=Letter(subject, "owner_escalation", values),
        ticket=number, auto_submitted="auto-generated",
    )


# ---------------------------------------------------------------- words for times, for a person


def human_duration(seconds: float) -> str:
    """'under a second', '42 s', '17 min', '2 h 5 min', '14 h', '3 days'."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 10:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    if hours < 48:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


def human_moment(when: dt.datetime, timezone: str, now: dt.datetime | None = None) -> str:
    """'today 16:00', 'yesterday 09:30', 'Tuesday 3 March 16:00', in the shop's time zone."""
    zone = zoneinfo.ZoneInfo(timezone)
    local = when.astimezone(zone)
    clock = local.strftime("%H:%M")
    if now is not None:
        days = (now.astimezone(zone).date() - local.date()).days
        if days == 0:
            return f"today {clock}"
        if days == 1:
            return f"yesterday {clock}"
        if days == -1:
            return f"tomorrow {clock}"
    return f"{local.strftime('%A')} {local.day} {local.strftime('%B')} {clock}"
