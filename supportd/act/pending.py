"""Held irreversible actions: asked for clearly, confirmed by the customer, performed exactly once.

A clear request ("please cancel my order 77120") becomes a pending action with a token from
``secrets`` (160 bits), stored here only as its SHA-256. The confirmation request goes to the From
address of the request, never to Reply-To or an address in the body.

A reply confirms only when it comes from that same address, carries the token (subject, body, or
In-Reply-To to our confirmation's Message-ID) AND the customer's own, unquoted words say yes.
Mailman confirms on any reply that carries the token; a reply saying "No, don't cancel" quotes the
token too, so supportd reads the words (``supportd.decide.explicit.confirmation_answer``).

States: ``waiting`` -> ``confirmed`` -> ``performing`` -> ``done`` (or ``failed``), and ``waiting`` ->
``refused`` / ``expired`` / ``dropped``. Exactly once: only ``waiting`` can become ``confirmed`` (a
repeated "yes" finds ``done``); ``performing`` is committed before the hook runs, and a hook is given
an idempotency key unique to the action, so a crash between the hook and the record re-runs the hook
with the same key, which a hook must treat as "already done" (the README's hook contract).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from supportd.act import tickets
from supportd.base.clock import iso, parse_iso
from supportd.decide.registry import confirm_action
from supportd.intake.message import Inbound
from supportd.service import faults
from supportd.service.context import Context
from supportd.state.ledger import Doc

log = logging.getLogger(__name__)
TOKEN_BYTES = 20
# Possessive spaces: "please confirm" and 40,000 spaces took 29 s with \s*[:#]?\s* (quadratic).
TOKEN_IN_TEXT = re.compile(r"\b(?:confirm|confirmation code)\s*+[:#]?\s*+([A-Za-z0-9_-]{27})(?![A-Za-z0-9_-])",
                           re.IGNORECASE)
WAITING, CONFIRMED, PERFORMING, DONE, FAILED = "waiting", "confirmed", "performing", "done", "failed"
REFUSED, EXPIRED, DROPPED = "refused", "expired", "dropped"
FINAL = (DONE, FAILED, REFUSED, EXPIRED, DROPPED)
MAX_HOOK_ATTEMPTS = 3
# Our mails whose replies answer a pending action (their Message-ID carries its id): the request, and
# the one clarifying question after an unclear answer.
CONFIRM_KINDS = ("confirm", "clarify")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def describe(action: str, params: dict[str, Any], done: bool = False) -> str:
    """'cancel order 77120', or with ``done`` 'cancelled order 77120' (see ``supportd.decide.registry``)."""
    return confirm_action(action).describe(params, done)


def describe_done(action: str, params: dict[str, Any]) -> str:
    return describe(action, params, done=True)


def undo_text(ctx: Context, action: str) -> str:
    return confirm_action(action).undo(ctx)


def new_pending_id(ctx: Context, ticket: int) -> str:
    """'c1042', or 'c1042b' when the ticket already has one."""
    for suffix in ("", *"bcdefghijklmnopqrstuvwxyz"):
        candidate = f"c{ticket}{suffix}"
        if ctx.ledger.get("pending", id=candidate) is None:
            return candidate
    return f"c{ticket}-{secrets.token_hex(3)}"


def make_pending(ctx: Context, *, pending_id: str, action: str, params: dict[str, Any], address: str,
                 ticket: int, token: str, closes_ticket: bool = True) -> Doc:
    """The held action as stored: the token only as its hash.

    ``closes_ticket``: the ticket exists for this request alone, so doing it closes the ticket (a
    defect ticket with an "unsubscribe me" in it stays open for the defect).
    The idempotency key is unique for ever (the id alone could come back once old records are pruned).
    """
    now = ctx.now()
    expires = now + dt.timedelta(hours=ctx.config.limits.confirmation_hours)
    return {
        "id": pending_id, "action": action, "params": params, "address": address.lower(),
        "token_hash": hash_token(token), "created": iso(now), "expires": iso(expires),
        "state": WAITING, "ticket": ticket, "clarified": False, "attempts": 0, "result": "",
        "next_at": None, "closes_ticket": closes_ticket,
        "idempotency_key": f"supportd-{pending_id}-{secrets.token_hex(8)}",
    }


@dataclass(frozen=True)
class ConfirmationReply:
    """A message that answers one of our confirmation requests (or tries to)."""

    pending: Doc | None  # None: a token we do not know
    via: str  # 'reference' or 'token'


def find_confirmation(ctx: Context, msg: Inbound, confirm_ref: str | None) -> ConfirmationReply | None:
    """The pending action this message answers; None when it shows no sign of answering one."""
    if confirm_ref is not None:
        pending = ctx.ledger.get("pending", id=confirm_ref)
        if pending is not None:
            return ConfirmationReply(pending, "reference")
    tokens = TOKEN_IN_TEXT.findall(msg.subject) + TOKEN_IN_TEXT.findall(msg.full_text)
    for token in tokens:
        pending = ctx.ledger.get("pending", token_hash=hash_token(token))
        if pending is not None:
            return ConfirmationReply(pending, "token")
    if tokens:
        return ConfirmationReply(None, "token")
    return None


def is_expired(ctx: Context, pending: Doc) -> bool:
    return pending["state"] == EXPIRED or (
        pending["state"] == WAITING and parse_iso(pending["expires"]) <= ctx.now()
    )


def expire_due(ctx: Context) -> list[Doc]:
    """Waiting actions past their expiry: nothing happens, and the digest counts them."""
    expired = [p for p in ctx.ledger.find("pending", state=WAITING) if is_expired(ctx, p)]
    for pending in expired:
        ctx.ledger.patch("pending", "id", pending["id"], state=EXPIRED)
        ctx.ledger.record("pending", pending["id"], action=pending["action"], outcome=EXPIRED,
                          ticket=pending["ticket"])
    return expired


# ---------------------------------------------------------------- performing


def actions_to_perform(ctx: Context) -> list[Doc]:
    """Confirmed actions, and any caught mid-hook by a crash (run again with the same key)."""
    now = iso(ctx.now())
    candidates = ctx.ledger.find("pending", state=CONFIRMED) + ctx.ledger.find("pending", state=PERFORMING)
    return [p for p in candidates if not p.get("next_at") or p["next_at"] <= now]


def perform_confirmed(ctx: Context) -> int:
    """Carry out every confirmed action once; tell the customer; returns how many were done."""
    done = 0
    for held in actions_to_perform(ctx):
        attempts = int(held.get("attempts", 0)) + 1
        if attempts > MAX_HOOK_ATTEMPTS:  # killed mid-hook again and again: stop, a person takes over
            _give_up_action(ctx, held, f"supportd stopped during the hook {attempts - 1} times")
            ctx.ledger.commit()
            continue
        stranger = not_the_owners(ctx, held)
        if stranger:  # the order changed hands, or was held before ownership was checked: never run
            _give_up_action(ctx, held, stranger, tried=False)
            ctx.ledger.commit()
            continue
        ctx.ledger.patch("pending", "id", held["id"], state=PERFORMING, attempts=attempts)
        ctx.ledger.commit()  # a crash from here on re-runs the hook with the same idempotency key
        faults.point("performing", held["id"])
        held = {**held, "state": PERFORMING, "attempts": attempts}
        outcome = confirm_action(held["action"]).perform(ctx, held)
        faults.point("performed", held["id"])
        if outcome.ok:
            _finish_action(ctx, held, by_hand=outcome.by_hand, detail=outcome.detail)
            done += 1
        elif attempts >= MAX_HOOK_ATTEMPTS:
            _give_up_action(ctx, held, outcome.detail)
        else:
            retry_at = ctx.now() + dt.timedelta(minutes=2 ** attempts)
            ctx.ledger.patch("pending", "id", held["id"], state=CONFIRMED, next_at=iso(retry_at),
                             result=outcome.detail)
            log.warning("action %s failed (%s); trying again at %s", held["id"], outcome.detail, iso(retry_at))
        ctx.ledger.commit()
    return done


def _customer_mail(ctx: Context, held: Doc, *, kind: str, template: str) -> Any:
    from supportd.decide import hours
    from supportd.deliver.outbox import Answering, Letter, MailKey, compose
    from supportd.deliver.replies import first_name, reply_subject
    from supportd.intake.message import Address

    ticket = tickets.lookup(ctx, held["ticket"]) or {"subject": "", "thread": [], "name": ""}
    thread = ticket.get("thread") or []
    due = hours.due_time(ctx.now(), ctx.config.hours)
    values = {
        "name": first_name(ticket.get("name", "")), "customer": ticket.get("name") or held["address"],
        "email": held["address"], "ticket": held["ticket"], "ticket_tag": f"[#{held['ticket']}]",
        "subject": ticket.get("subject", ""), "action": describe(held["action"], held["params"]),
        "done": describe_done(held["action"], held["params"]),
        "undo": undo_text(ctx, held["action"]),
        "eta": hours.describe_eta(due, ctx.now(), ctx.config.hours, ticket.get("language", "")),
        "language": ticket.get("language"),
        "order_number": held["params"].get("order_number"),
    }
    return compose(
        ctx, MailKey(kind, str(held["ticket"]), f"{held['id']}:{kind}"),
        to=Address(ticket.get("name", ""), held["address"]),
        letter=Letter(reply_subject(ticket.get("subject", ""), held["ticket"]), template, values),
        answering=Answering.thread(thread), ticket=held["ticket"],
    )


def _finish_action(ctx: Context, held: Doc, *, by_hand: bool, detail: str) -> None:
    from supportd.deliver.outbox import Letter, MailKey, compose, queue
    from supportd.intake.message import Address

    if by_hand:
        ticket = tickets.lookup(ctx, held["ticket"]) or {}
        values = {"action": describe(held["action"], held["params"]),
                  "customer": ticket.get("name") or held["address"],
                  "email": held["address"], "ticket": held["ticket"],
                  "order_number": held["params"].get("order_number"),
                  "details": f"The customer confirmed on {held.get('confirmed', '')} from {held['address']}. "
                             f"When it is done, tell them with: supportd resolve {held['ticket']} "
                             f"--message \"...\""}
        subject = f"[supportd] please {describe(held['action'], held['params'])} (ticket {held['ticket']})"
        queue(ctx, compose(
            ctx, MailKey("owner", str(held["ticket"]), f"{held['id']}:owner"),
            to=Address("", ctx.config.shop.owner_address), letter=Letter(subject, "owner_action", values),
            ticket=held["ticket"], auto_submitted="auto-generated",
        ))
        queue(ctx, _customer_mail(ctx, held, kind="confirmed", template="action_confirmed"))
        _keep_ticket_open(ctx, held["ticket"])
    else:
        queue(ctx, _customer_mail(ctx, held, kind="done", template="action_done"))
        if held.get("closes_ticket", True) and tickets.lookup(ctx, held["ticket"]):
            tickets.close(ctx, held["ticket"], "done")
    ctx.ledger.patch("pending", "id", held["id"], state=DONE, result=detail[:300], done_at=iso(ctx.now()),
                     by_hand=by_hand)
    ctx.ledger.record("pending", held["id"], action=held["action"], outcome=DONE, by_hand=by_hand,
                      ticket=held["ticket"])
    log.info("performed %s (%s)%s", held["action"], held["id"], " by asking the owner" if by_hand else "")


def tell_done_by_hand(ctx: Context, pending_id: str) -> None:
    """The owner says a change made by hand is done: the customer is told, the ticket closes."""
    from supportd.deliver.outbox import queue

    held = ctx.ledger.get("pending", id=pending_id)
    if held is None:
        return
    queue(ctx, _customer_mail(ctx, held, kind="done", template="action_done"))
    if held["state"] != DONE:
        ctx.ledger.record("pending", held["id"], action=held["action"], outcome=DONE, by_hand=True,
                          ticket=held["ticket"])
    ctx.ledger.patch("pending", "id", pending_id, state=DONE, by_hand=True, told_done=True,
                     done_at=iso(ctx.now()))
    if tickets.lookup(ctx, held["ticket"]):
        tickets.close(ctx, held["ticket"], "done")


def _keep_ticket_open(ctx: Context, number: int) -> None:
    """The customer was told a person will do it by the ETA: the ticket is due then, and chased after."""
    from supportd.decide import hours

    ticket = tickets.lookup(ctx, number)
    if ticket is None:
        return
    due = hours.due_time(ctx.now(), ctx.config.hours)
    if ticket["state"] == "open" and ticket.get("due"):
        return
    tickets.update(ctx, ticket, state="open", due=iso(due), closed_at=None, outcome=None)


def not_the_owners(ctx: Context, held: Doc) -> str:
    """Why the confirming address does not own the held order ('' when it does, or nothing says)."""
    from supportd.decide import orders

    number = held["params"].get("order_number")
    if not number or not orders.has_source(ctx.config.orders):
        return ""
    ownership = orders.owner_of(ctx.config.orders, str(number), held["address"])
    if ownership.belongs_to(held["address"]):
        return ""
    return (f"the order source does not say order {number} belongs to {held['address']} "
            f"({'it names ' + ownership.owner if ownership.owner else 'it names nobody'}); the hook was not run")


def _give_up_action(ctx: Context, held: Doc, detail: str, tried: bool = True) -> None:
    from supportd.deliver.outbox import queue
    from supportd.owner import alerts as owner

    ctx.ledger.patch("pending", "id", held["id"], state=FAILED, result=detail[:300])
    ctx.ledger.record("pending", held["id"], action=held["action"], outcome=FAILED, ticket=held["ticket"])
    ticket = tickets.lookup(ctx, held["ticket"])
    mail = owner.escalation(
        ctx, cause="action-failed", subject_key=held["id"], ticket=ticket, customer=held["address"],
        details=(f"The customer confirmed '{describe(held['action'], held['params'])}', but the hook failed "
                 f"{MAX_HOOK_ATTEMPTS} times ({detail}). Please do it by hand and tell the customer." if tried else
                 f"{held['address']} confirmed '{describe(held['action'], held['params'])}', but {detail}. "
                 "Nothing was changed; please check who this order belongs to."),
    )
    if mail is not None:
        queue(ctx, mail)
        owner.mark_escalated(ctx, "action-failed", held["id"])
    log.error("action %s failed for good: %s", held["id"], detail)
