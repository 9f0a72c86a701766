"""The processing protocol: every message handled once, answered once, never lost.

A message's record in the ledger (``messages``, key ``FOLDER:UIDVALIDITY:UID``) moves through:

==============  ====================================================  ==============================
state           written when                                          a restart does
==============  ====================================================  ==============================
``claimed``     before the message is parsed ("in hand")               handles it again, alone; after
                                                                      ``max_attempts`` failures of its
                                                                      own, quarantines it
``decided``     with its plan: ticket, held action, replies queued    sends what is still queued
                in the outbox (one commit)
(replies)       outbox ``queued -> committing -> sent`` (see          ``committing`` counts as sent;
                ``supportd.deliver.outbox`` and ``supportd.deliver.mailer``)          ``queued`` is sent
``done``        when every reply is sent and copied to Sent           marks it on the server
(finished)      after the server-side mark (keyword or move):         nothing: it is in the history
                moved to ``history/``, removed from the hot ledger
``quarantined`` after ``max_attempts`` failures, or when oversize     marks it on the server, tells
                                                                      the owner
==============  ====================================================  ==============================

The server-side mark comes only after the ledger says ``done``; customer mail is never deleted.
Work is done in batches (one FETCH, one commit per step, one round of parallel SMTP sends, one
STORE): the commits are per batch, the guarantees per message. A message that was in flight when
supportd stopped is handled alone next time, so a message that crashes supportd every time is
isolated and quarantined rather than taking its batch down with it.

In a backlog (two batches or more), the next batch's bytes are fetched before it is claimed and
handed to a read-ahead process (``supportd.service.readahead``), which parses them and reads them
(``supportd.decide.reading``: rules, FAQ, guard, language; no ledger, no IMAP, no SMTP) while this
batch is handled. Parsing unclaimed bytes ahead is harmless: it is pure, and a message that is then
not handled (a stop, a message moved away meanwhile) has had nothing done about it. The table holds
as it is: a reading is used only after the message's claim is committed, a message that vanished
after its bytes were fetched is found by the size check that follows the claim, and plans are
applied here, in UID order. A retry is always read here, alone, after its ``deciding`` mark.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from supportd.act import pending, tickets
from supportd.base.clock import iso, parse_iso
from supportd.decide.actions import Plan, apply_plan, plan_message
from supportd.decide.budget import DecisionTimeout, decision_budget
from supportd.deliver import outbox
from supportd.deliver.envelope import SENT
from supportd.deliver.mailer import Mailer
from supportd.deliver.sentcopy import SentCopier
from supportd.intake.inbox import Landed, Mailbox, Stored
from supportd.intake.message import Inbound, message_id_of, parse
from supportd.intake.msgids import read_message_id
from supportd.owner import alerts as owner
from supportd.owner import unanswered
from supportd.service import faults
from supportd.service.context import Context
from supportd.service.readahead import Outcome, Read, ReadAhead, TimedOut, processes_for
from supportd.state.ledger import CLAIMED, DECIDED, DONE, QUARANTINED, VANISHED, Doc, Ledger

log = logging.getLogger(__name__)


# A pass keeps the decision summaries (reply text included) of its first PLANS_KEPT messages only,
# for ``supportd once`` and the tests: kept for every message they were 0.5 KB+ each for the whole pass.
PLANS_KEPT = 200
# What the plan of a message read ahead gets when its reading used up (nearly) all of the time limit.
MIN_PLAN_SECONDS = 0.001


@dataclass
class PassReport:
    """What one pass did, for logs, ``supportd once`` and the tests."""

    handled: int = 0
    acknowledged: int = 0
    quarantined: int = 0
    sent: int = 0
    plans: list[dict[str, Any]] = field(default_factory=list)  # the first PLANS_KEPT decisions

    def keep_plan(self, plan: dict[str, Any]) -> None:
        if len(self.plans) < PLANS_KEPT:
            self.plans.append(plan)


class Pipeline:
    def __init__(self, ctx: Context, mailbox: Mailbox, mailer: Mailer,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.ctx = ctx
        self.mailbox = mailbox
        self.mailer = mailer
        self.should_stop = should_stop
        self.recovered = False
        self.last_look: dt.datetime | None = None  # when this process last searched the folder
        self.look_before: dt.datetime | None = None  # the search before the current one
        self.sent_copier = SentCopier(mailbox.config)  # Sent copies while the next batch is decided
        self.own_copies: Landed = frozenset()  # our Sent copies since the last scan: not fetched back

    @property
    def ledger(self) -> Ledger:
        return self.ctx.ledger

    @property
    def recovering(self) -> bool:
        """After ``supportd recover``: check the Sent folder before answering anything."""
        return bool(self.ledger.meta("recovering"))

    # ------------------------------------------------------------ one pass

    def run_pass(self) -> PassReport:
        """Handle everything new, send what is due, finish what is done. Holds the state lock."""
        report = PassReport()
        with self.ledger.locked():
            self._check_uidvalidity()
            if not self.recovered:
                self._recover_after_restart()
                self.recovered = True
            self._finish()
            finished = True
            ahead: ReadAhead | None = None
            try:
                batches = self._batches()
                ahead = self._read_ahead_for(batches)
                for number, batch in enumerate(batches, start=1):
                    if self.should_stop():
                        finished = False
                        break
                    following = batches[number] if ahead is not None and number < len(batches) else []
                    self._handle_batch(batch, report, ahead, following)  # the last batch's replies go out meanwhile
                    self._settle_sending(report)
                    self._start_sending()  # each batch goes all the way, one behind: the hot state stays small
                    self._finish(copy_meanwhile=number < len(batches))
                self._settle_sending(report)
                self._finish()  # the last copies in flight, if a stop came between batches
            except BaseException:
                self.mailer.abandon()
                raise
            finally:
                if ahead is not None:
                    ahead.close()
                    log.info("read %d of %d messages ahead in a second process", ahead.read, report.handled)
                self._note_copied(self.sent_copier.settle())
                self.sent_copier.close()
            if finished and self.recovering:
                self.ledger.set_meta("recovering", False)
                log.info("recovery finished: every message in the folder has been checked")
            self.scan_sent()
            pending.perform_confirmed(self.ctx)
            self._send_due(report)
            self._finish()
        return report

    def look_at_sent(self) -> int:
        """``scan_sent`` under the state lock (before the scheduled jobs of ``supportd once``)."""
        with self.ledger.locked():
            return self.scan_sent()

    def scan_sent(self) -> int:
        """Replies a person sent from a mail client, filed in the Sent folder: their tickets are answered.

        The folder has its own UID cursor and is never changed. supportd's own copies (signed
        Message-IDs) are skipped; a reply counts when it belongs to a ticket's thread (or carries
        its tag and went to its customer). Returns how many tickets a reply answered.
        """
        cursor: dict[str, Any] = self.ledger.meta("sent_cursor") or {}
        created = self.ledger.meta("created")
        since = (parse_iso(created) if created else self.ctx.now()) - dt.timedelta(days=1)
        own, self.own_copies = self.own_copies | self.sent_copier.take_landed(), frozenset()
        uidvalidity, high, found = self.mailbox.sent_since(int(cursor.get("uidvalidity", 0)),
                                                           int(cursor.get("high", 0)), since.date(), own)
        if not uidvalidity or (uidvalidity, high) == (cursor.get("uidvalidity"), cursor.get("high")):
            return 0
        answered = 0
        for uid, raw in sorted(found.items()):
            if read_message_id(self.ctx.secret, message_id_of(raw)) is not None:
                continue  # our own copy, known from its headers: its body need not be read
            answered += self._person_reply_in_sent(parse(raw), f"sent:{uidvalidity}:{uid}")
        self.ledger.set_meta("sent_cursor", {"uidvalidity": uidvalidity, "high": high})
        self.ledger.commit()
        return answered

    def _person_reply_in_sent(self, msg: Inbound, fallback_id: str) -> int:
        if read_message_id(self.ctx.secret, msg.message_id) is not None:
            return 0  # our own copy
        ticket = tickets.find_answered(self.ctx, msg, trust_tag=True)
        if ticket is None:
            return 0
        when = msg.written_at(self.ctx.now())
        if tickets.person_replied(self.ctx, ticket, msg.message_id or fallback_id, when) is None:
            return 0
        log.info("ticket %s answered by a person at %s (a reply in the Sent folder)", ticket["number"], iso(when))
        self.ledger.record("person-reply", msg.message_id or fallback_id, ticket=ticket["number"], when=iso(when),
                           via="sent")
        return 1

    def _cursor(self) -> dict[str, Any]:
        cursor: dict[str, Any] = self.ledger.meta("cursor") or {}
        return cursor

    def _key(self, uid: int) -> str:
        return f"{self.mailbox.config.folder}:{self.mailbox.uidvalidity}:{uid}"

    def _batches(self) -> list[list[int]]:
        """Messages left claimed by a crash, one at a time; then new ones in batches."""
        cursor = self._cursor()
        self.look_before = self.last_look or (parse_iso(cursor["looked"]) if cursor.get("looked") else None)
        self.last_look = self.ctx.now()
        retry = sorted(m["uid"] for m in self.ledger.find("messages", state=CLAIMED)
                       if m["uidvalidity"] == self.mailbox.uidvalidity)
        new = [u for u in self.mailbox.unhandled_uids(above=int(cursor.get("high", 0))) if u not in retry]
        size = self.ctx.config.limits.batch_size
        return [[uid] for uid in retry] + [new[i : i + size] for i in range(0, len(new), size)]

    def _read_ahead_for(self, batches: list[list[int]]) -> ReadAhead | None:
        """Read-ahead processes for a backlog (two batches or more); a lone new message is read here."""
        processes = processes_for(self.ctx.config.limits.read_ahead_processes)
        if not processes or sum(1 for batch in batches if len(batch) > 1) < 2:
            return None
        try:
            return ReadAhead(self.ctx.reader, processes, self.ctx.config.limits.decision_seconds)
        except Exception as exc:  # e.g. no room for the rules' file: slower, nothing else
            log.warning("cannot start reading ahead (%s); this pass reads every message itself", exc)
            return None

    def _hand_ahead(self, ahead: ReadAhead, uids: list[int], stored: dict[int, Stored]) -> None:
        """The next batch's bytes to the read-ahead process, before that batch is claimed.

        Reading is pure, so reading a message that is then not handled in this pass (a stop, a
        vanished or oversize message, one at its ``max_attempts``) changes nothing. A retry is
        always read alone, here, after its ``deciding`` mark (see ``_claim``).
        """
        limit = self.ctx.config.limits.max_message_bytes
        ahead.hand(self.mailbox.fetch([uid for uid in uids if uid in stored and stored[uid].size <= limit]))

    # ------------------------------------------------------------ the steps

    def _handle_batch(self, uids: list[int], report: PassReport, ahead: ReadAhead | None = None,
                      following: list[int] | None = None) -> None:
        """Claim, read, plan and apply these messages; meanwhile the ``following`` batch (its sizes
        asked with this one's, in one FETCH) is read ahead, unless it is a lone retry."""
        records = self._claim(uids)
        limit_reached = [r for r in records if r["failures"] >= self.ctx.config.limits.max_attempts]
        self._quarantine(limit_reached, "failed {failures} times", report)
        live = [r for r in records if r not in limit_reached]
        following = following if ahead is not None and ahead.working and following and len(following) > 1 else []
        stored = self.mailbox.stored([r["uid"] for r in live] + following)
        if ahead is not None and following:
            self._hand_ahead(ahead, following, stored)
        self._note_waits(live, stored)
        limit = self.ctx.config.limits.max_message_bytes
        oversize = [r for r in live if r["uid"] in stored and stored[r["uid"]].size > limit]
        self._quarantine(oversize, f"larger than limits.max_message_bytes ({limit} bytes)", report)
        wanted = [r for r in live if r not in oversize]
        read = ahead.take(uids) if ahead is not None else {}  # read ahead, before the claim: still there?
        raws = self.mailbox.fetch([r["uid"] for r in wanted if r["uid"] not in read])
        faults.point("fetched")
        failed, too_slow = [], []
        for record in wanted:
            uid = record["uid"]
            source: bytes | Outcome | None = read.pop(uid) if uid in read else raws.pop(uid, None)
            if source is None or (uid not in stored and not isinstance(source, bytes)):
                self._forget_vanished(record)
                continue
            decided = self._decide(record, source, report)
            self.mailer.pump()  # the replies in flight move on: the ledger is whole between two messages
            if decided is None:
                too_slow.append(record)
            elif not decided:
                failed.append(record)
        self.ledger.commit()
        faults.point("decided")
        self._quarantine(too_slow, "too slow to decide", report)
        self._quarantine([r for r in failed if r["failures"] >= self.ctx.config.limits.max_attempts],
                         "handling failed {failures} times", report)

    def _claim(self, uids: Sequence[int]) -> list[Doc]:
        """Record that these messages are in hand, before anything can go wrong with them.

        A message still marked in hand from an earlier claim was being handled when supportd died.
        That counts as a failure of the message only if supportd died while reading that message
        alone (parsing or planning it, marked ``deciding``): a crash in a batch, or in an IMAP,
        SMTP or disk step, says nothing about the message, which is why messages caught in a crash
        are retried one at a time (see ``_batches``). Exceptions count at once (see ``_decide``).
        """
        records = []
        alone = len(uids) == 1
        for uid in uids:
            key = self._key(uid)
            record = self.ledger.get("messages", key=key) or {
                "key": key, "uid": uid, "uidvalidity": self.mailbox.uidvalidity,
                "folder": self.mailbox.config.folder, "state": CLAIMED, "attempts": 0, "failures": 0,
                "in_hand": False, "alone": False,
                "received": iso(self.ctx.now()), "fingerprint": "", "message_id": "", "error": "",
            }
            if record["in_hand"] and record.get("deciding"):
                record["failures"] = int(record["failures"]) + 1
                record["error"] = record["error"] or "supportd stopped while reading it"
            record.update(attempts=int(record["attempts"]) + 1, in_hand=True, alone=alone, deciding=False)
            self.ledger.put("messages", "key", record)
            records.append(record)
        cursor = self._cursor()
        high = max([int(cursor.get("high", 0)), *uids])
        self.ledger.set_meta("cursor", {"folder": self.mailbox.config.folder, "uidvalidity": self.mailbox.uidvalidity,
                                        "high": high, "looked": iso(self.last_look or self.ctx.now())})
        self.ledger.commit()
        faults.point("claimed")
        return records

    def _note_waits(self, records: list[Doc], stored: dict[int, Stored]) -> None:
        """How long each message lay in the mailbox before this pickup (for the digest's ack time)."""
        now = self.ctx.now()
        for record in records:
            if "waited" not in record and record["uid"] in stored:
                record["waited"] = waited_before_pickup(now, stored[record["uid"]].arrived, self.look_before)
                self.ledger.patch("messages", "key", record["key"], waited=record["waited"])

    def _decide(self, record: Doc, source: bytes | Outcome, report: PassReport) -> bool | None:
        """Parse (or take what was read ahead), plan and apply one message; False when it failed (it
        stays claimed), None when it took longer than ``limits.decision_seconds`` (it is quarantined
        at once: the queue goes on)."""
        started = time.perf_counter()
        budget = self.ctx.config.limits.decision_seconds
        if record["alone"]:  # a retry after a crash: if supportd dies reading it, the message is to blame
            self.ledger.patch("messages", "key", record["key"], deciding=True)
            self.ledger.commit()
        try:
            if isinstance(source, TimedOut):
                raise DecisionTimeout(source.seconds)
            if isinstance(source, Read):  # read ahead: the plan has what is left of the time limit
                msg, reading, left = source.msg, source.reading, max(budget - source.seconds, MIN_PLAN_SECONDS)
            else:
                with decision_budget(budget):
                    msg = parse(source)
                reading, left = None, budget
            faults.point("deciding", msg.subject)
            if self.recovering and self._answered_before(msg):
                self._mark_answered_before(record, msg)
                return True
            with decision_budget(left):  # planning only reads: stopping it halfway changes nothing
                plan = plan_message(self.ctx, msg, record["key"], reading)
            apply_plan(self.ctx, plan)
        except DecisionTimeout as exc:
            log.error("message %s: %s; set aside for the owner", record["key"], exc)
            record.update(error=str(exc), in_hand=False, deciding=False)
            return None
        except Exception as exc:  # any failure: recorded, retried, quarantined after max_attempts
            log.exception("message %s failed (attempt %d)", record["key"], record["attempts"])
            record.update(error=f"{type(exc).__name__}: {exc}"[:300], failures=int(record["failures"]) + 1,
                          in_hand=False, deciding=False)
            self.ledger.patch("messages", "key", record["key"], error=record["error"],
                              failures=record["failures"], in_hand=False, deciding=False)
            return False
        summary = plan.summary()
        self.ledger.patch(
            "messages", "key", record["key"], state=DECIDED, fingerprint=msg.fingerprint,
            message_id=msg.message_id, decided=iso(self.ctx.now()), summary=_compact(summary, plan),
            replies=[m.message_id for m in plan.mails], sender=msg.sender.key if msg.sender else "",
        )
        report.handled += 1
        report.acknowledged += 1 if plan.customer_reply else 0
        report.keep_plan({"key": record["key"], **summary})
        _log_decision(record, plan.msg.message_id, summary, time.perf_counter() - started)
        return True

    def _answered_before(self, msg: Inbound) -> bool:
        ref = outbox.reference_of(msg.fingerprint)
        return bool(self.mailbox.sent_has([ref], header="X-Supportd-Ref"))

    def _mark_answered_before(self, record: Doc, msg: Inbound) -> None:
        log.info("message %s was answered before the state was recovered (its reply is in Sent)", record["key"])
        self.ledger.patch("messages", "key", record["key"], state=DECIDED, fingerprint=msg.fingerprint,
                          message_id=msg.message_id, decided=iso(self.ctx.now()), replies=[],
                          summary={"outcome": "answered before the state was recovered"})

    def _forget_vanished(self, record: Doc) -> None:
        """The owner moved or deleted the message before we fetched it: nothing to answer."""
        log.info("message %s is no longer in the folder; skipped", record["key"])
        self.ledger.record("message", record["key"], state=VANISHED, attempts=record["attempts"])
        self.ledger.remove("messages", "key", [record["key"]])

    def _quarantine(self, records: list[Doc], reason: str, report: PassReport) -> None:
        if not records:
            return
        self.mailbox.mark_quarantined([r["uid"] for r in records])
        for record in records:
            why = reason.format(failures=record.get("failures", 0), error=record.get("error", ""))
            detail = f"{why}; last error: {record.get('error') or 'none'}"
            log.error("quarantined %s: %s", record["key"], detail)
            imap = self.mailbox.config
            where = f"marked {imap.quarantine_keyword}"
            if imap.quarantine_folder:
                where += f" in {imap.quarantine_folder}"
            mail = owner.escalation(
                self.ctx, cause="quarantined", subject_key=record["key"],
                details=f"supportd set this message aside ({detail}). It is still in the mailbox, {where}; "
                        "please read and answer it yourself.",
            )
            if mail is not None:
                outbox.queue(self.ctx, mail)
                owner.mark_escalated(self.ctx, "quarantined", record["key"])
            self.ledger.record("message", record["key"], state=QUARANTINED, reason=detail,
                               attempts=record["attempts"], failures=record["failures"],
                               fingerprint=record.get("fingerprint", ""))
            report.quarantined += 1
        self.ledger.remove("messages", "key", [r["key"] for r in records])
        self.ledger.commit()

    def _send_due(self, report: PassReport) -> None:
        self._start_sending()
        self._settle_sending(report)

    def _start_sending(self) -> None:
        """Begin sending the replies due; they go out while the pipeline goes on (``mailer.pump``)."""
        entries = outbox.due_entries(self.ctx)
        log.debug("%d replies due to send", len(entries))
        outbox.start_sending(self.ctx, self.mailer, entries)

    def _settle_sending(self, report: PassReport) -> None:
        results = outbox.finish_sending(self.ctx, self.mailer)
        report.sent += sum(1 for r in results if r.status == SENT)

    def _finish(self, copy_meanwhile: bool = False) -> None:
        """Copy sent replies to Sent, mark finished messages on the server, move both to the history.

        With ``copy_meanwhile`` (more batches follow) the copies go to Sent on a second connection
        while the next batch is decided; its messages are done at the next ``_finish``. Measured on
        3,000 mails: the MULTIAPPENDs were 5.0 s of a 40 s profiled pass, all of it waiting.
        """
        self._note_copied(self.sent_copier.wait())
        self._copy_sent(meanwhile=copy_meanwhile)
        self._mark_done()
        carried_codes = self._archive_replies()
        self.ledger.commit()
        if carried_codes:  # the previous generation still holds the confirmation codes: not any more
            self.ledger.forget_previous()

    def _mark_done(self) -> None:
        for record in self.ledger.find("messages", state=DECIDED):
            if self._replies_settled(record):
                self.ledger.patch("messages", "key", record["key"], state=DONE)
        done = self.ledger.find("messages", state=DONE)
        if not done:
            return
        self.ledger.commit()
        faults.point("done")
        current = [r for r in done if r["uidvalidity"] == self.mailbox.uidvalidity]
        self.mailbox.mark_handled([r["uid"] for r in current])
        faults.point("marked")
        for record in done:
            self.ledger.record("message", record["key"], state=DONE, fingerprint=record["fingerprint"],
                               message_id=record["message_id"], received=record["received"],
                               waited=record.get("waited", 0.0),
                               decided=record.get("decided"), sender=record.get("sender", ""),
                               **record.get("summary", {}))
        self.ledger.remove("messages", "key", [r["key"] for r in done])

    def _replies_settled(self, record: Doc) -> bool:
        for message_id in record.get("replies", []):
            entry = self.ledger.get("outbox", id=message_id)
            if entry is None:
                continue
            if entry["state"] == outbox.FAILED:
                continue
            if entry["state"] != SENT or not entry["copied"]:
                return False
        return True

    def _uncopied(self) -> list[Doc]:
        return [e for e in self.ledger.find("outbox", state=SENT) if not e["copied"]]

    def _copy_sent(self, meanwhile: bool = False) -> None:
        """Append the sent replies not yet in Sent: now, or ``meanwhile`` on the copier's connection."""
        uncopied = self._uncopied()
        if not uncopied:
            return
        ids, raws = [e["id"] for e in uncopied], [e["raw"].encode("utf-8") for e in uncopied]
        if meanwhile:
            self.sent_copier.start(ids, raws)
            return
        self.own_copies |= self.mailbox.append_sent(raws)
        self._note_copied(ids)

    def _note_copied(self, ids: list[str]) -> None:
        """The server took these copies; committed with "done" next: a crash before finds them in Sent."""
        if not ids:
            return
        faults.point("copied")
        for message_id in ids:
            self.ledger.patch("outbox", "id", message_id, copied=True)

    def _archive_replies(self) -> bool:
        """Sent-and-copied or failed replies leave the hot ledger (their text with them).

        True when one of them was a confirmation request, whose text held a confirmation code.
        """
        finished = [e for e in self.ledger.find("outbox")
                    if (e["state"] == SENT and e["copied"]) or e["state"] == outbox.FAILED]
        for entry in finished:
            if entry["state"] == outbox.FAILED:
                self._report_failed_reply(entry)
            fields = {k: entry[k] for k in ("kind", "for_key", "ticket", "state", "created", "sent_at",
                                            "tries", "last_error")}
            self.ledger.record("reply", entry["id"], **fields)
        self.ledger.remove("outbox", "id", [e["id"] for e in finished])
        return any(e["kind"] == "confirm" for e in finished)

    def _report_failed_reply(self, entry: Doc) -> None:
        if entry["kind"] == "owner":
            log.error("could not reach the owner (%s): %s", entry["id"], entry["last_error"])
            return
        mail = owner.escalation(
            self.ctx, cause="smtp-failed", subject_key=entry["id"],
            details=f"The mail server refused our reply '{entry['subject']}' to {entry['to']} for good: "
                    f"{entry['last_error']}. Please answer the customer another way.",
        )
        if mail is not None:
            outbox.queue(self.ctx, mail)
            owner.mark_escalated(self.ctx, "smtp-failed", entry["id"])

    # ------------------------------------------------------------ after a restart

    def _recover_after_restart(self) -> None:
        """Finish what a stop or a crash left in between (see the table above)."""
        caught = outbox.recover_committing(self.ctx)
        if self.recovering:  # the state may be a step behind: trust the Sent folder over it
            waiting = [e for e in self.ledger.find("outbox") if e["state"] in outbox.PENDING_STATES]
            found = self.mailbox.sent_has(e["id"] for e in waiting)
            for message_id in found:
                self.ledger.patch("outbox", "id", message_id, state=SENT, copied=True,
                                  last_error="found in Sent after a recovery")
        uncopied = self._uncopied()
        if uncopied:
            already = self.mailbox.sent_has(e["id"] for e in uncopied)
            for entry in uncopied:
                if entry["id"] in already:
                    self.ledger.patch("outbox", "id", entry["id"], copied=True)
        if caught or uncopied:
            self.ledger.commit()

    def _check_uidvalidity(self) -> None:
        """The server renumbered the folder: start the scan over; fingerprints stop re-answers."""
        cursor = self._cursor()
        if not cursor or int(cursor.get("uidvalidity", 0)) == self.mailbox.uidvalidity:
            return
        log.warning("UIDVALIDITY of %s changed (%s -> %s): rescanning; handled mail is recognised by "
                    "its Message-ID", self.mailbox.config.folder, cursor.get("uidvalidity"),
                    self.mailbox.uidvalidity)
        stale = [m for m in self.ledger.find("messages") if m["uidvalidity"] != self.mailbox.uidvalidity]
        self.ledger.remove("messages", "key", [m["key"] for m in stale if m["state"] == CLAIMED])
        self.ledger.set_meta("cursor", {"folder": self.mailbox.config.folder,
                                        "uidvalidity": self.mailbox.uidvalidity, "high": 0})
        self.ledger.commit()


def _compact(summary: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """What the history keeps of a decision: no reply text, and of the customer's words only a few
    keywords of mail no rule understood (the digest's candidates for a new rule)."""
    return {
        "primary_intent": summary["primary_intent"], "intents": summary["intents"],
        "explicit_request": summary["explicit_request"], "rule": summary["rule"],
        "skip_reason": summary["skip_reason"], "ticket": summary["ticket"],
        "auto_reply": summary["auto_reply"], "confirmation": summary["confirmation"],
        "held_action": summary["held_action"]["action"] if summary["held_action"] else None,
        "tentative": [m.intent for m in plan.decision.tentative_mentions],
        "matched_rules": list(plan.decision.matched_rules), "outcome": summary["outcome"],
        "angry": plan.decision.angry,
        "thread": "new" if plan.new_ticket else "follow-up" if plan.join_ticket else None,
        # for the digest's "words shared by mail no rule understood" (only such mail keeps any words)
        "keywords": (unanswered.keywords(f"{plan.msg.topic}\n{plan.msg.own_text}")
                     if plan.new_ticket and not plan.decision.matched_rules else []),
        "faq": plan.faq, "faq_unhelpful": plan.faq_unhelpful,
        # for the digest's "questions no FAQ entry answers": the question of mail nothing understood
        "question": (unanswered.question_of(plan.msg.own_text, plan.msg.topic)
                     if plan.new_ticket and not plan.decision.matched_rules and plan.decision.faq is None else ""),
    }


def _log_decision(record: Doc, message_id: str, summary: dict[str, Any], seconds: float) -> None:
    """One line per message for the journal: id, intent, rule, what was done. No bodies, no secrets."""
    log.info(
        "message %s id=%s intent=%s rule=%s ticket=%s did=%s%s (%.0f ms)",
        record["key"], message_id or "-", summary["primary_intent"], summary["rule"],
        summary["ticket"] or "-", summary["outcome"] or "-",
        f" skip={summary['skip_reason']}" if summary["skip_reason"] else "", seconds * 1000,
    )


def waited_before_pickup(picked_up: dt.datetime, arrived: dt.datetime | None,
                         look_before: dt.datetime | None) -> float:
    """Seconds a message lay in the mailbox before supportd picked it up (0 when unknown).

    The server's arrival time (INTERNALDATE) alone can mislead: a message copied or moved into the
    folder keeps its old date. A message that the previous search did not find came after it, so
    the wait is at most the time since that search. Before the first search ever, the mail that
    is already there says nothing about supportd: 0.
    """
    if arrived is None or look_before is None:
        return 0.0
    waited = min(picked_up - arrived, picked_up - look_before).total_seconds()
    return round(max(0.0, waited), 1)
