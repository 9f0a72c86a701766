"""Work on the clock: expiring confirmations, chasing overdue tickets, the weekly digest.

The ``schedule`` library decides *when* to look (every minute, every hour); what is due is decided
from the ledger and the injected clock, never from ``schedule``'s memory. That matters because
``schedule`` forgets everything on restart, does not catch up missed runs, and reruns a job that
raised at once (measured: 95 times in a second). So: every job is wrapped, and "last digest sent"
lives in the ledger, which is how a digest missed while supportd was down is sent when it comes
back, and never twice for one week.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import schedule

from supportd.act import pending, tickets
from supportd.base.clock import iso, parse_iso
from supportd.deliver.outbox import queue, stuck_entries
from supportd.owner import alerts as owner
from supportd.owner import digest
from supportd.service.context import Context
from supportd.state.ledger import Doc

log = logging.getLogger(__name__)
SENDER_RECORD_DAYS = 2
ESCALATION_RECORD_DAYS = 30


def overdue_keys(ticket: Doc) -> tuple[str, str]:
    """(subject key, ticket tag) of a ticket's overdue alert: '1042' and 'overdue' the first time,
    '1042/1' and 'overdue/1' once the customer reopened it (a new promise, so a new alert), and
    '1042/1z2', 'overdue/1z2' after the owner snoozed it twice (a new due time, a new alert)."""
    reopened = int(ticket.get("reopened", 0))
    snoozed = int(ticket.get("snoozed", 0))
    suffix = (f"/{reopened}" if reopened or snoozed else "") + (f"z{snoozed}" if snoozed else "")
    return f"{ticket['number']}{suffix}", f"overdue{suffix}"


class Jobs:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.scheduler = schedule.Scheduler()
        self.scheduler.every(1).minutes.do(self.minutely)
        self.scheduler.every(1).hours.do(self.hourly)

    def run_pending(self) -> None:
        self.scheduler.run_pending()

    def run_all(self) -> None:
        """Every job now (at start, and in ``supportd once``)."""
        self.minutely()
        self.hourly()

    def seconds_until_next(self) -> float:
        idle = self.scheduler.idle_seconds
        return max(0.0, idle) if idle is not None else 60.0

    def _guarded(self, job: str, steps: list[tuple[str, Callable[[], object]]]) -> None:
        """Run ``steps`` under one state lock (one commit); a failing step is logged and the next one runs.

        A failing job must not stop the daemon, nor rerun in a storm (what ``schedule`` does with a job
        that raises), nor keep the other steps, the weekly digest above all, from running.
        """
        try:
            with self.ctx.ledger.locked():
                for name, step in steps:
                    try:
                        step()
                    except Exception:
                        log.exception("scheduled job %s failed; it runs again at its next time", name)
        except Exception:  # the lock or the commit: the state folder's trouble is reported by the pass
            log.exception("scheduled %s jobs could not run; they run again at their next time", job)

    def minutely(self) -> None:
        self._guarded("minutely", [
            ("expiring confirmations", lambda: pending.expire_due(self.ctx)),
            ("overdue tickets", self.escalate_overdue),
            ("stuck outbox", self.alert_stuck_outbox),
            ("weekly digest", lambda: digest.send_if_due(self.ctx)),
        ])

    def hourly(self) -> None:
        self._guarded("hourly", [
            ("archiving tickets", lambda: tickets.archive_closed(self.ctx)),
            ("setting aside stale tickets", lambda: tickets.set_aside_stale(self.ctx)),
            ("pruning counters", self.prune_counters),
        ])

    def escalate_overdue(self) -> None:
        """One alert per ticket that passed its due time (and one more each time it is reopened)."""
        for ticket in tickets.overdue(self.ctx):
            cause_key, tag = overdue_keys(ticket)
            if tag in ticket.get("escalated", []):
                continue
            due = parse_iso(ticket["due"])
            now = self.ctx.now()
            promised = owner.human_moment(due, self.ctx.config.hours.timezone, now)
            mail = owner.escalation(
                self.ctx, cause="overdue", subject_key=cause_key, ticket=ticket,
                customer=ticket["customer"], customer_name=ticket.get("name", ""),
                details=f"We promised {ticket['customer']} an answer by {promised} "
                        f"({owner.human_duration((now - due).total_seconds())} ago).",
            )
            if mail is not None:
                queue(self.ctx, mail)
                owner.mark_escalated(self.ctx, "overdue", cause_key)
            tickets.mark_escalated(self.ctx, ticket, tag)

    def alert_stuck_outbox(self) -> None:
        stuck = stuck_entries(self.ctx)
        if not stuck:
            return
        oldest = min(stuck, key=lambda e: e["created"])
        since = owner.human_moment(parse_iso(oldest["created"]), self.ctx.config.hours.timezone, self.ctx.now())
        day = self.ctx.local_day()
        mail = owner.escalation(
            self.ctx, cause="outbox-stuck", subject_key=day,
            details=f"{len(stuck)} replies are waiting for the mail server; the oldest since "
                    f"{since} (last answer: {oldest['last_error'] or 'none'}). supportd keeps "
                    "trying; check the SMTP settings and the server.",
        )
        if mail is not None:
            queue(self.ctx, mail)
            owner.mark_escalated(self.ctx, "outbox-stuck", day)

    def prune_counters(self) -> None:
        today = dt.date.fromisoformat(self.ctx.local_day())
        old_senders = [s["address"] for s in self.ctx.ledger.find("senders")
                       if (today - dt.date.fromisoformat(s["day"])).days >= SENDER_RECORD_DAYS]
        self.ctx.ledger.remove("senders", "address", old_senders)
        cutoff = iso(self.ctx.now() - dt.timedelta(days=ESCALATION_RECORD_DAYS))
        old = [e["key"] for e in self.ctx.ledger.find("escalations") if e["at"] < cutoff]
        self.ctx.ledger.remove("escalations", "key", old)
        finished = [p for p in self.ctx.ledger.find("pending") if p["state"] in pending.FINAL
                    and p["expires"] < cutoff]
        self.ctx.ledger.remove("pending", "id", [p["id"] for p in finished])
