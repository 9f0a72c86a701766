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

from supportd import owner, pending, tickets
from supportd.clock import iso, parse_iso
from supportd.context import Context
from supportd.outbox import queue, stuck_entries

log = logging.getLogger(__name__)
SENDER_RECORD_DAYS = 2
ESCALATION_RECORD_DAYS = 30


class Jobs:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.scheduler = schedule.Scheduler()
        self.scheduler.every(1).minutes.do(self._guarded("minutely", self.minutely))
        self.scheduler.every(1).hours.do(self._guarded("hourly", self.hourly))

    def run_pending(self) -> None:
        self.scheduler.run_pending()

    def run_all(self) -> None:
        """Every job now (at start, and in ``supportd once``)."""
        self._guarded("minutely", self.minutely)()
        self._guarded("hourly", self.hourly)()

    def seconds_until_next(self) -> float:
        idle = self.scheduler.idle_seconds
        return max(0.0, idle) if idle is not None else 60.0

    def _guarded(self, name: str, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                with self.ctx.ledger.locked():
                    job()
            except Exception:  # a failing job must not stop the daemon, nor rerun in a storm
                log.exception("scheduled job %s failed; it runs again at its next time", name)
        return run

    def minutely(self) -> None:
        pending.expire_due(self.ctx)
        self.escalate_overdue()
        self.alert_stuck_outbox()
        from supportd import digest

        digest.send_if_due(self.ctx)

    def hourly(self) -> None:
        tickets.archive_old(self.ctx)
        self.prune_counters()

    def escalate_overdue(self) -> None:
        for ticket in tickets.overdue(self.ctx):
            if "overdue" in ticket.get("escalated", []):
                continue
            due = parse_iso(ticket["due"])
            hours_late = (self.ctx.now() - due).total_seconds() / 3600
            mail = owner.escalation(
                self.ctx, cause="overdue", subject_key=str(ticket["number"]), ticket=ticket,
                customer=ticket["customer"], customer_name=ticket.get("name", ""),
                details=f"We promised {ticket['customer']} an answer by {iso(due)} ({hours_late:.1f} hours "
                        f"ago). When answered: supportd resolve {ticket['number']}",
            )
            if mail is not None:
                queue(self.ctx, mail)
                owner.mark_escalated(self.ctx, "overdue", str(ticket["number"]))
            tickets.mark_escalated(self.ctx, ticket, "overdue")

    def alert_stuck_outbox(self) -> None:
        stuck = stuck_entries(self.ctx)
        if not stuck:
            return
        oldest = min(stuck, key=lambda e: e["created"])
        day = self.ctx.local_day()
        mail = owner.escalation(
            self.ctx, cause="outbox-stuck", subject_key=day,
            details=f"{len(stuck)} replies are waiting for the mail server; the oldest since "
                    f"{oldest['created']} (last answer: {oldest['last_error'] or 'none'}). supportd keeps "
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
