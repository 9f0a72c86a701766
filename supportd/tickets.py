"""Tickets: every acknowledgment carries one; those that promise a follow-up stay open until kept.

A customer's follow-up joins its ticket instead of starting a new one (and gets no second
acknowledgment). It is recognised by our signed Message-ID in In-Reply-To/References, from anyone
(only someone who received our mail can know it), or by the ``[#1042]`` subject tag, but only from
the ticket's own sender (anyone can type a tag).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from supportd.clock import iso
from supportd.context import Context
from supportd.ledger import Doc
from supportd.message import Inbound
from supportd.msgids import read_message_id

FIRST_TICKET = 1001
TAG = re.compile(r"\[#(\d{3,9})\]")
OPEN, CLOSED = "open", "closed"
STALE_DAYS = 90


@dataclass(frozen=True)
class Thread:
    """The ticket a message belongs to, and how we know."""

    ticket: Doc
    how: str  # 'reference' or 'subject-tag'
    our_kind: str | None = None  # kind of our mail it answers ('ack', 'confirm', ...)
    our_ref: str | None = None


def lookup(ctx: Context, number: int) -> Doc | None:
    """An open ticket (hot ledger) or one closed in the last 90 days (the history's index)."""
    return ctx.ledger.get("tickets", number=number) or ctx.ledger.closed_tickets().get(number)


def save(ctx: Context, ticket: Doc) -> None:
    """Open tickets live in the hot ledger; a closed one moves to the history (and its index)."""
    if ticket["state"] == OPEN:
        ctx.ledger.put("tickets", "number", ticket)
    else:
        ctx.ledger.remove("tickets", "number", [ticket["number"]])
        ctx.ledger.record("ticket", f"{ticket['number']}/{ticket.get('reopened', 0)}", **ticket)


def update(ctx: Context, ticket: Doc, **changes: Any) -> Doc:
    merged = {**ticket, **changes}
    save(ctx, merged)
    return merged


def find_thread(ctx: Context, msg: Inbound) -> Thread | None:
    for message_id in msg.thread_ids:
        ours = read_message_id(ctx.secret, message_id)
        if ours is None:
            continue
        kind, ref = ours
        ticket = _ticket_for_ref(ctx, kind, ref)
        if ticket is not None:
            return Thread(ticket, "reference", kind, ref)
    for tag in TAG.finditer(msg.subject) if msg.sender is not None else ():
        ticket = lookup(ctx, int(tag.group(1)))
        if ticket is not None and msg.sender is not None and ticket["customer"] == msg.sender.key:
            return Thread(ticket, "subject-tag")
    return None


def _ticket_for_ref(ctx: Context, kind: str, ref: str) -> Doc | None:
    if kind in ("confirm", "clarify"):  # their ref is a pending action's id (supportd.pending.CONFIRM_KINDS)
        pending = ctx.ledger.get("pending", id=ref)
        return lookup(ctx, pending["ticket"]) if pending else None
    if ref.isdigit():
        return lookup(ctx, int(ref))
    return None


def peek_number(ctx: Context) -> int:
    """The number the next new ticket gets (taken for real in ``new_ticket``)."""
    return int(ctx.ledger.meta("next_ticket", FIRST_TICKET))


def new_ticket(ctx: Context, *, number: int, msg: Inbound, intent: str, follow_up: bool,
               due: dt.datetime | None, faq: str | None = None,
               language: str = "") -> Doc:
    """A new ticket; without ``follow_up`` it is closed at once (answered, or waiting for the customer).

    ``faq`` names the FAQ entry that answered it: the ticket waits for the customer (no due time,
    never overdue), and their reply comes back to a person."""
    assert msg.sender is not None
    if number != peek_number(ctx):
        raise RuntimeError("ticket numbers must be taken in order")
    ctx.ledger.next_number("next_ticket", FIRST_TICKET)
    now = iso(ctx.now())
    doc: dict[str, Any] = {
        "number": number,
        "customer": msg.sender.key,
        "name": msg.sender.name,
        "subject": msg.topic[:200],
        "intent": intent,
        "state": OPEN if follow_up else CLOSED,
        "opened": now,
        "due": iso(due) if due and follow_up else None,
        "closed_at": None if follow_up else now,
        "last_message": now,
        "messages": 1,
        "thread": [msg.message_id] if msg.message_id else [],
        "escalated": [],
        "reopened": 0,
    }
    if language:
        doc["language"] = language  # later mails on this ticket (done, resolved) use it too
    if not follow_up:
        doc["outcome"] = "answered"
    if faq:
        doc.update(faq=faq, outcome="waiting")  # what `supportd tickets` shows as waiting
    save(ctx, doc)
    return doc


def join(ctx: Context, ticket: Doc, msg: Inbound, due: dt.datetime, reopen: bool = True) -> Doc:
    """A follow-up on the ticket: count it, and open the ticket again if it was closed (unless the
    follow-up needs no person: ``reopen=False``)."""
    changes: dict[str, Any] = {
        "last_message": iso(ctx.now()),
        "messages": int(ticket.get("messages", 0)) + 1,
        "thread": (ticket.get("thread", []) + ([msg.message_id] if msg.message_id else []))[-20:],
    }
    if ticket["state"] != OPEN and reopen:
        changes.update(state=OPEN, due=iso(due), closed_at=None, reopened=int(ticket.get("reopened", 0)) + 1,
                       outcome=None)
    return update(ctx, ticket, **changes)


def close(ctx: Context, number: int, outcome: str = "resolved", **details: Any) -> Doc | None:
    """Close a ticket (it moves to the history); ``outcome`` says how: resolved, done, answered."""
    ticket = lookup(ctx, number)
    if ticket is None:
        return None
    return update(ctx, ticket, state=CLOSED, closed_at=iso(ctx.now()), due=None, outcome=outcome, **details)


def mark_escalated(ctx: Context, ticket: Doc, cause: str) -> bool:
    """Remember one escalation per cause per ticket; False when this cause was already escalated."""
    causes = list(ticket.get("escalated", []))
    if cause in causes:
        return False
    causes.append(cause)
    update(ctx, ticket, escalated=causes)
    ticket["escalated"] = causes
    return True


def open_tickets(ctx: Context) -> list[Doc]:
    """Open tickets, overdue first, then by due time."""
    now = iso(ctx.now())
    tickets = ctx.ledger.find("tickets", state=OPEN)
    return sorted(tickets, key=lambda t: (not (t.get("due") and t["due"] < now), t.get("due") or "9"))


def overdue(ctx: Context) -> list[Doc]:
    now = iso(ctx.now())
    return ctx.ledger.find("tickets", where=lambda t: bool(t.get("due")) and t["due"] < now, state=OPEN)


def archive_closed(ctx: Context) -> int:
    """Move closed tickets that a state file from an older supportd still keeps hot into the history."""
    closed = ctx.ledger.find("tickets", state=CLOSED)
    for ticket in closed:
        save(ctx, ticket)
    return len(closed)


def set_aside_stale(ctx: Context) -> list[Doc]:
    """Tickets overdue for more than STALE_DAYS, already chased, leave the open list as 'stale'.

    They were escalated when they fell due and shown as overdue in every weekly digest since;
    kept open for ever, they would only bury the live ones (and slow every commit). The digest
    names them once more; a reply from the customer opens the ticket again.
    """
    cutoff = iso(ctx.now() - dt.timedelta(days=STALE_DAYS))
    stale = ctx.ledger.find("tickets", where=lambda t: bool(t.get("due")) and t["due"] < cutoff, state=OPEN)
    for ticket in stale:
        close(ctx, ticket["number"], "stale")
    return stale
