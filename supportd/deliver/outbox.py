"""Outgoing mail: composed once, queued in the ledger, sent once, copied to Sent.

An outbox entry moves ``queued -> committing -> sent`` (or ``retry`` / ``failed``). It is written
to the ledger with the decision that produced it, so a crash can never lose a reply that was
decided, and its Message-ID is fixed then, so a resend after a crash would be recognisable.

* ``queued``: not yet handed to SMTP. A restart sends it.
* ``committing``: staged at the server, committed here, final dot about to be written (see
  ``supportd.deliver.mailer``). A restart counts it as sent and logs it.
* ``retry``: the server said "not now" (4xx) or could not be reached. Tried again with
  exponential backoff (``smtp.retry_first_seconds``, default 1 min, doubling to 1 h) for
  ``smtp.retry_hours``; the owner hears about a
  reply stuck longer than ``smtp.stuck_alert_hours``.
* ``retry`` after a refused login (535, 530, an unreadable password): nothing is wrong with the
  mail, so it stays queued however long that takes (never ``failed``), tried again every
  ``smtp.retry_first_seconds``, and goes out by itself once the password is fixed.
* ``failed``: the server said no for good (5xx), or retries ran out. Recorded and reported,
  never retried in a storm.
* ``sent``: the server accepted it. The raw text is dropped from the hot ledger once a copy is
  in the Sent folder (and with it any confirmation token it carried).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supportd.base.clock import iso, parse_iso
from supportd.deliver.envelope import COMMITTING as COMMITTING
from supportd.deliver.envelope import FAILED as FAILED
from supportd.deliver.envelope import LOGIN, PERMANENT, SENT, Envelope, Result
from supportd.deliver.envelope import PENDING_STATES as PENDING_STATES
from supportd.deliver.envelope import QUEUED as QUEUED
from supportd.deliver.envelope import RETRY as RETRY
from supportd.deliver.envelope import UNSENT_STATES as UNSENT_STATES
from supportd.deliver.replies import NOTHING as NOTHING
from supportd.deliver.replies import Answering as Answering
from supportd.deliver.replies import Draft, email_bytes
from supportd.intake.identity import display_name_for_reply
from supportd.intake.message import Address
from supportd.intake.msgids import make_message_id
from supportd.service import faults
from supportd.service.context import Context
from supportd.state.ledger import Doc

if TYPE_CHECKING:  # the SMTP client is the daemon's: composing and queuing need no network library
    from supportd.deliver.mailer import Mailer

log = logging.getLogger(__name__)
MAX_RETRY_SECONDS = 3600


@dataclass(frozen=True)
class MailKey:
    """Which mail this is: its Message-ID follows from (kind, ref, basis), so a mail decided again (after a
    crash, or by ``try``) gets the same Message-ID and is queued once. ``kind``: ack, confirm, owner, ..."""

    kind: str
    ref: str
    basis: str


@dataclass(frozen=True)
class Letter:
    """What a mail says: its subject, and the reply template (``replies/NAME``) with its values."""

    subject: str
    template: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Outgoing:
    """One composed mail, ready to queue."""

    kind: str
    message_id: str
    to: str
    subject: str
    text: str
    raw: bytes
    for_key: str | None
    ticket: int | None

    def summary(self) -> dict[str, str]:
        return {"to": self.to, "subject": self.subject, "text": self.text}


def compose(
    ctx: Context,
    mail: MailKey,
    *,
    to: Address,
    letter: Letter,
    answering: Answering = NOTHING,
    ticket: int | None = None,
    auto_submitted: str = "auto-replied",
) -> Outgoing:
    """Render the letter and build the email to ``to``; ``answering`` is the message this mail answers
    (thread headers, ``X-Supportd-Ref``, and the ledger key the outbox sends it with)."""
    shop = ctx.config.shop
    base_values = {"shop": shop.name, "footer": shop.contact_footer}
    rendered = ctx.replies.render(letter.template, {**base_values, **letter.values})
    message_id = make_message_id(ctx.secret, mail.kind, mail.ref, mail.basis, shop.message_id_domain)
    headers = {"Auto-Submitted": auto_submitted}
    if ticket:
        headers["X-Supportd-Ticket"] = str(ticket)
    if answering.about:
        headers["X-Supportd-Ref"] = reference_of(answering.about)
    raw = email_bytes(Draft(
        sender=Address(shop.name, shop.support_address), to=Address(display_name_for_reply(to.name), to.email),
        subject=letter.subject, rendered=rendered, message_id=message_id, date=ctx.local_now(),
        answering=answering, headers=headers,
    ))
    return Outgoing(kind=mail.kind, message_id=message_id, to=to.email, subject=" ".join(letter.subject.split()),
                    text=rendered.text, raw=raw, for_key=answering.key, ticket=ticket)


def reference_of(fingerprint: str) -> str:
    """The X-Supportd-Ref value for a customer message: a hash, so no address or ID leaks."""
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:24]


def queue(ctx: Context, mail: Outgoing) -> None:
    """Put a composed mail in the outbox (durable with the next commit). Queuing twice is a no-op."""
    if ctx.ledger.get("outbox", id=mail.message_id) is not None:
        return
    now = iso(ctx.now())
    ctx.ledger.put("outbox", "id", {
        "id": mail.message_id, "kind": mail.kind, "for_key": mail.for_key, "ticket": mail.ticket,
        "to": mail.to, "subject": mail.subject, "raw": mail.raw.decode("utf-8"),
        "state": QUEUED, "tries": 0, "next_at": now, "created": now, "sent_at": None,
        "copied": False, "last_error": "",
    })


def due_entries(ctx: Context, for_keys: set[str] | None = None) -> list[Doc]:
    now = iso(ctx.now())
    entries = [e for e in ctx.ledger.find("outbox") if e["state"] in PENDING_STATES and e["next_at"] <= now]
    if for_keys is not None:
        entries = [e for e in entries if e.get("for_key") in for_keys or e.get("for_key") is None]
    return sorted(entries, key=lambda e: e["created"])


def send(ctx: Context, mailer: Mailer, entries: list[Doc]) -> list[Result]:
    """Send ``entries`` with the staged commit (see ``supportd.deliver.mailer``); record each outcome."""
    start_sending(ctx, mailer, entries)
    return finish_sending(ctx, mailer)


def start_sending(ctx: Context, mailer: Mailer, entries: list[Doc]) -> None:
    """Begin sending ``entries``: the mailer commits their ``committing`` state between its rounds, inside
    ``mailer.pump()`` (the caller pumps only where the ledger is whole) or ``finish_sending``."""
    if not entries:
        return
    envelopes = [Envelope(e["id"], ctx.config.shop.support_address, e["to"], e["raw"].encode("utf-8"))
                 for e in entries]

    def commit(ids: list[str]) -> None:
        faults.point("staged")
        for message_id in ids:
            ctx.ledger.patch("outbox", "id", message_id, state=COMMITTING)
        ctx.ledger.commit()

    mailer.start(envelopes, commit)


def finish_sending(ctx: Context, mailer: Mailer) -> list[Result]:
    """Wait for the send in flight and record each outcome (nothing when none was in flight)."""
    if mailer.job is None:
        return []
    results = mailer.finish()
    faults.point("answered")
    for result in results:
        record_result(ctx, result)
    ctx.ledger.commit()
    faults.point("recorded")
    return results


def record_result(ctx: Context, result: Result) -> None:
    entry = ctx.ledger.get("outbox", id=result.id)
    if entry is None:
        return
    now = ctx.now()
    if result.status == SENT:
        ctx.ledger.patch("outbox", "id", result.id, state=SENT, sent_at=iso(now),
                         last_error=result.detail if result.code != 250 else "")
        log.info("sent %s %s to %s", entry["kind"], result.id, _masked(entry["to"]))
        return
    error = f"{result.code} {result.detail}".strip()[:300]
    if result.status == LOGIN:  # the settings' fault, not the message's: keep it, however long
        ctx.ledger.patch("outbox", "id", result.id, state=RETRY, last_error=error,
                         next_at=iso(now + dt.timedelta(seconds=ctx.config.smtp.retry_first_seconds)))
        log.error("the SMTP server refused supportd's login (%s); %s %s stays queued until the password "
                  "works", error, entry["kind"], result.id)
        return
    tries = int(entry["tries"]) + 1
    give_up = now - parse_iso(entry["created"]) > dt.timedelta(hours=ctx.config.smtp.retry_hours)
    if result.status == PERMANENT or give_up:
        ctx.ledger.patch("outbox", "id", result.id, state=FAILED, tries=tries, last_error=error)
        log.error("giving up on %s %s: %s", entry["kind"], result.id, error)
        return
    delay = min(MAX_RETRY_SECONDS, ctx.config.smtp.retry_first_seconds * 2 ** (tries - 1))
    ctx.ledger.patch("outbox", "id", result.id, state=RETRY, tries=tries, last_error=error,
                     next_at=iso(now + dt.timedelta(seconds=delay)))
    log.warning("SMTP said not now for %s (%s); next try in %d s", result.id, error, delay)


def recover_committing(ctx: Context) -> list[str]:
    """After a crash: replies caught between commit and reply count as sent (see ``supportd.deliver.mailer``)."""
    caught = [e["id"] for e in ctx.ledger.find("outbox", state=COMMITTING)]
    for message_id in caught:
        ctx.ledger.patch("outbox", "id", message_id, state=SENT, sent_at=iso(ctx.now()),
                         last_error="unconfirmed: stopped between commit and the server's answer")
        log.warning("reply %s was being sent when supportd stopped; counted as sent", message_id)
    return caught


def stuck_entries(ctx: Context) -> list[Doc]:
    limit = ctx.now() - dt.timedelta(hours=ctx.config.smtp.stuck_alert_hours)
    return [e for e in ctx.ledger.find("outbox") if e["state"] in PENDING_STATES
            and parse_iso(e["created"]) < limit]


def _masked(address: str) -> str:
    """Logs name the domain, not the person."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
