"""Tickets: every acknowledgment carries one; those that promise a follow-up stay open until kept.

A customer's follow-up joins its ticket instead of starting a new one (and gets no second
acknowledgment). A ticket's thread is every Message-ID in it: the customer's, our acknowledgments
and the replies a person wrote from a mail client. A follow-up is recognised by our signed
Message-ID in In-Reply-To/References, from anyone (only someone who received our mail can know
it); by another Message-ID of the thread, or by the ``[#1042]`` subject tag, but only from the
ticket's own sender (anyone can type a tag).

What the owner sees (``state_of``): ``open`` (a person owes an answer by ``due``), ``overdue``,
``answered`` (a person answered; nothing is owed until the customer writes again), ``waiting``
(nothing is promised: the ticket waits for the customer, after an FAQ answer or a confirmation
request) and ``closed``. In the ledger a ticket is only open (hot) or closed (history); answered
and waiting tickets are closed ones with the outcome ``replied`` or ``waiting``, so a customer's
answer opens them again like any closed one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from supportd.base.clock import iso
from supportd.intake.message import Inbound
from supportd.intake.msgids import read_message_id
from supportd.service.context import Context
from supportd.state.ledger import Doc

FIRST_TICKET = 1001
TAG = re.compile(r"\[#(\d{3,9})\]")
# What a customer writes for a ticket number: "[#1042]", "#1042", "ticket 1042", "Ticket-Nr. 1042".
MENTIONED_NUMBER = re.compile(r"(?:\[#|#|\bticket[\s-]*(?:no\.?|number|nr\.?|nummer)?\s*#?\s*)(\d{4,9})\b",
                              re.IGNORECASE)
OPEN, CLOSED = "open", "closed"
REPLIED = "replied"  # the outcome of a ticket a person answered
WAITING = "waiting"  # the outcome of a ticket that waits for the customer: nothing is owed to them
STATES = ("open", "answered", "waiting", "overdue", "closed")
STALE_DAYS = 90
THREAD_KEEP = 20


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
    """The ticket a customer's message follows up on, or None for a new request."""
    found = _by_our_reference(ctx, msg)
    if found is not None:
        return found
    if msg.sender is None:
        return None
    ticket = _by_thread_member(ctx, msg)
    if ticket is not None and ticket["customer"] == msg.sender.key:
        return Thread(ticket, "thread")
    for tag in MENTIONED_NUMBER.finditer(f"{msg.subject}\n{msg.own_text[:2000]}"):
        ticket = lookup(ctx, int(tag.group(1)))
        if ticket is not None and ticket["customer"] == msg.sender.key:
            return Thread(ticket, "subject-tag")
    return None


def latest_of(ctx: Context, customer: str) -> Doc | None:
    """The customer's most recent ticket (open, or closed in the last 90 days): what "I wrote
    before" is about when the message names no ticket."""
    mine = [t for number in ctx.ledger.ticket_numbers("customer", customer) for t in _versions(ctx, number)
            if t["customer"] == customer]
    if not mine:
        return None
    return lookup(ctx, max(mine, key=lambda t: (t.get("opened") or "", t["number"]))["number"])


def _versions(ctx: Context, number: int) -> list[Doc]:
    """The ticket as it is open in the hot ledger and as it was last closed (a reopened one has both)."""
    return [t for t in (ctx.ledger.get("tickets", number=number), ctx.ledger.closed_tickets().get(number)) if t]


def find_answered(ctx: Context, msg: Inbound, trust_tag: bool) -> Doc | None:
    """The ticket a person's reply (to the customer, from a mail client) belongs to, or None.

    By the thread's Message-IDs; with ``trust_tag`` (mail in our own Sent folder, which only the
    mailbox's holder can file) also by the ``[#1042]`` tag when the reply went to the ticket's customer.
    """
    found = _by_our_reference(ctx, msg)
    if found is not None:
        return found.ticket
    ticket = _by_thread_member(ctx, msg)
    if ticket is not None or not trust_tag:
        return ticket
    recipients = {a.key for a in (*msg.to, *msg.cc)}
    for tag in TAG.finditer(msg.subject):
        ticket = lookup(ctx, int(tag.group(1)))
        if ticket is not None and ticket["customer"] in recipients:
            return ticket
    return None


def _by_our_reference(ctx: Context, msg: Inbound) -> Thread | None:
    """A signed Message-ID of a mail we sent about a ticket (never one of the owner's alerts)."""
    for message_id in msg.thread_ids:
        ours = read_message_id(ctx.secret, message_id)
        if ours is None or ours[0] in OWNER_KINDS:
            continue
        kind, ref = ours
        ticket = _ticket_for_ref(ctx, kind, ref)
        if ticket is not None:
            return Thread(ticket, "reference", kind, ref)
    return None


def _by_thread_member(ctx: Context, msg: Inbound) -> Doc | None:
    """A ticket whose thread holds one of the Message-IDs this message answers (nearest first; an
    open ticket before a closed one, then the newest).

    Through the ledger's index: a scan of every ticket took 33-73 ms a message at 10,000 open."""
    for message_id in (m.lower() for m in msg.thread_ids if read_message_id(ctx.secret, m) is None):
        holders = [(bool(ctx.ledger.get("tickets", number=number)), number)
                   for number in ctx.ledger.ticket_numbers("thread", message_id)
                   if any(message_id in (m.lower() for m in t.get("thread", [])) for t in _versions(ctx, number))]
        if holders:
            return lookup(ctx, max(holders)[1])
    return None


OWNER_KINDS = ("owner", "digest")  # mail that went to the owner only: its answers are the owner's


def _ticket_for_ref(ctx: Context, kind: str, ref: str) -> Doc | None:
    if kind in ("confirm", "clarify"):  # their ref is a pending action's id (supportd.act.pending.CONFIRM_KINDS)
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
               language: str = "", waiting: bool = False) -> Doc:
    """A new ticket; without ``follow_up`` it is closed at once (answered, or waiting for the customer).

    ``faq`` names the FAQ entry that answered it: the ticket waits for the customer (no due time,
    never overdue), and their reply comes back to a person. ``waiting``: it waits for the customer
    for another reason (a confirmation asked)."""
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
        "last_customer_mail": iso(msg.written_at(ctx.now())),
        "last_person_reply": None,
        "messages": 1,
        "thread": [msg.message_id] if msg.message_id else [],
        "escalated": [],
        "reopened": 0,
    }
    if language:
        doc["language"] = language  # later mails on this ticket (done, resolved) use it too
    if not follow_up:
        doc["outcome"] = WAITING if waiting or faq else "answered"  # waiting: what `supportd tickets` shows
    if faq:
        doc["faq"] = faq
    save(ctx, doc)
    return doc


def _with_member(ticket: Doc, message_id: str) -> list[str]:
    thread: list[str] = list(ticket.get("thread", []))
    if message_id and message_id not in thread:
        thread.append(message_id)
    return thread[-THREAD_KEEP:]


def join(ctx: Context, ticket: Doc, msg: Inbound, due: dt.datetime, reopen: bool = True) -> Doc:
    """A follow-up on the ticket: count it, and open the ticket again if it was closed (unless the
    follow-up needs no person: ``reopen=False``)."""
    changes: dict[str, Any] = {
        "last_message": iso(ctx.now()),
        "last_customer_mail": iso(msg.written_at(ctx.now())),
        "messages": int(ticket.get("messages", 0)) + 1,
        "thread": _with_member(ticket, msg.message_id),
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
    kept = promise(ticket, ctx.now()) if outcome in ("resolved", "done") else {}
    return update(ctx, ticket, **{"state": CLOSED, "closed_at": iso(ctx.now()), "due": None, "outcome": outcome,
                                  **kept, **details})


def promise(ticket: Doc, answered: dt.datetime) -> dict[str, Any]:
    """Was the open ticket's promise kept? ``kept`` or ``late``, by when a person answered."""
    if ticket["state"] != OPEN or not ticket.get("due"):
        return {}
    when = iso(answered)
    return {"promise": "kept" if when <= ticket["due"] else "late", "promised": ticket["due"],
            "answered_at": when}


def person_replied(ctx: Context, ticket: Doc, message_id: str, when: dt.datetime) -> Doc | None:
    """A person answered the customer from a mail client at ``when``: the ticket is answered.

    Its Message-ID joins the thread, so the customer's answer to it joins the ticket. Once per
    reply (None when this reply was counted before). A customer mail written after the reply
    still needs an answer: the ticket then stays open, due as it was.
    """
    counted = list(ticket.get("person_replies", []))
    if message_id and message_id in counted:
        return None
    when_text = iso(when)
    changes: dict[str, Any] = {
        "thread": _with_member(ticket, message_id),
        "person_replies": ([*counted, message_id] if message_id else counted)[-THREAD_KEEP:],
        "last_person_reply": max(ticket.get("last_person_reply") or "", when_text),
    }
    newer_customer_mail = (ticket.get("last_customer_mail") or "") > when_text
    if ticket["state"] == OPEN and not newer_customer_mail:
        changes.update(state=CLOSED, closed_at=iso(ctx.now()), due=None, outcome=REPLIED,
                       **promise(ticket, when))
    return update(ctx, ticket, **changes)


def wait_for_customer(ctx: Context, ticket: Doc) -> Doc:
    """Nothing is owed to the customer now (an answer went out): the ticket waits for them."""
    return update(ctx, ticket, state=CLOSED, closed_at=iso(ctx.now()), due=None, outcome=WAITING)


def state_of(ticket: Doc, now: dt.datetime) -> str:
    """What the owner sees: open, overdue, answered, waiting or closed (see the module's docstring)."""
    if ticket["state"] == OPEN:
        if not ticket.get("due"):
            return "waiting"
        return "overdue" if ticket["due"] < iso(now) else "open"
    return {REPLIED: "answered", WAITING: "waiting"}.get(str(ticket.get("outcome") or ""), "closed")


def listed(ctx: Context, include_closed: bool = False) -> list[Doc]:
    """Tickets for ``supportd tickets``: open ones (overdue first), then answered and waiting ones
    (newest first), then, with ``include_closed``, those closed in the last 90 days."""
    now = ctx.now()
    hot = open_tickets(ctx)
    open_numbers = {t["number"] for t in hot}
    rest = [t for t in ctx.ledger.closed_tickets().values() if t["number"] not in open_numbers
            and (include_closed or state_of(t, now) in ("answered", "waiting"))]
    rest.sort(key=lambda t: t.get("closed_at") or t.get("opened") or "", reverse=True)
    return hot + rest


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
