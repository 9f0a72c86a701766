"""How supportd is doing, for the owner: ``health.json`` from the daemon, ``supportd status`` to read it.

The daemon writes ``health.json`` in the state folder (atomically, when something changes and at
least every 30 s while it runs): when the IMAP and SMTP servers last worked, what is wrong now (a
refused login above all), and the last error. ``supportd status`` adds what the state says
(queued replies, open and overdue tickets, quarantined messages) and whether the daemon runs,
and exits non-zero when something needs the owner.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from supportd.base.clock import iso, parse_iso
from supportd.base.errors import StateError
from supportd.deliver.envelope import UNSENT_STATES
from supportd.state.ledger import QUARANTINED, STATE_FILE, History, atomic_write, read_state_file

HEALTH_FILE = "health.json"
REFRESH_SECONDS = 30.0


@dataclass
class Health:
    """What the daemon knows about itself; every time is an ISO string (UTC) or None."""

    pid: int = field(default_factory=os.getpid)
    started: str = ""
    ready: bool = False
    imap_ok: str | None = None  # the last time the IMAP server worked for us
    smtp_ok: str | None = None  # the last time the SMTP server took a reply
    imap_problem: str = ""  # what is wrong with IMAP now ("" when nothing)
    smtp_problem: str = ""
    last_error: str = ""
    last_error_at: str | None = None
    status: str = ""  # the STATUS= line systemd shows


class HealthFile:
    """The daemon's side: keeps a ``Health`` and writes it when it changed (or is 30 s old)."""

    def __init__(self, state_dir: Path, now: dt.datetime) -> None:
        self.path = state_dir / HEALTH_FILE
        self.health = Health(started=iso(now))
        before = read_health(state_dir)  # the last good contacts are still news after a restart
        if before is not None:
            self.health.imap_ok, self.health.smtp_ok = before.imap_ok, before.smtp_ok
        self.written: Health | None = None
        self.written_at = 0.0

    def error(self, text: str, now: dt.datetime) -> None:
        self.health.last_error, self.health.last_error_at = text[:500], iso(now)

    def save(self, force: bool = False) -> None:
        """Write when something other than a timestamp changed, or every ``REFRESH_SECONDS``."""
        current = dataclasses.replace(self.health)
        if not force and self.written is not None and _same_but_times(current, self.written) \
                and time.monotonic() - self.written_at < REFRESH_SECONDS:
            return
        try:
            atomic_write(self.path, orjson.dumps(dataclasses.asdict(current)))
        except OSError:
            return  # the state folder's own trouble is reported by the pass
        self.written, self.written_at = current, time.monotonic()


def _same_but_times(a: Health, b: Health) -> bool:
    return dataclasses.replace(a, imap_ok=None, smtp_ok=None) == dataclasses.replace(b, imap_ok=None, smtp_ok=None)


def read_health(state_dir: Path) -> Health | None:
    try:
        data = orjson.loads((state_dir / HEALTH_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    known = {f.name for f in dataclasses.fields(Health)}
    return Health(**{k: v for k, v in data.items() if k in known}) if isinstance(data, dict) else None


# ---------------------------------------------------------------- supportd status


def gather(state_dir: Path, daemon_pid: int | None, now: dt.datetime) -> dict[str, Any]:
    """Everything ``supportd status`` shows, as one JSON-ready dict; ``needs_owner`` lists what to fix."""
    health = read_health(state_dir)
    needs: list[str] = []
    report: dict[str, Any] = {"running": daemon_pid is not None, "pid": daemon_pid, "state_dir": str(state_dir)}
    if daemon_pid is None:
        needs.append("supportd is not running")
    try:
        state = read_state_file(state_dir / STATE_FILE)
        report["state_error"] = None
    except StateError as exc:
        state, report["state_error"] = {}, str(exc)
        needs.append("the state file needs attention (supportd recover)")
    if health is not None:
        report.update(started=health.started, ready=health.ready, last_imap_contact=health.imap_ok,
                      last_smtp_contact=health.smtp_ok, imap_problem=health.imap_problem or None,
                      smtp_problem=health.smtp_problem or None, last_error=health.last_error or None,
                      last_error_at=health.last_error_at, status_line=health.status or None)
        if daemon_pid is not None:
            needs += [f"IMAP: {health.imap_problem}"] if health.imap_problem else []
            needs += [f"SMTP: {health.smtp_problem}"] if health.smtp_problem else []
    else:
        report.update(started=None, ready=False, last_imap_contact=None, last_smtp_contact=None, imap_problem=None,
                      smtp_problem=None, last_error=None, last_error_at=None, status_line=None)
    outbox = [e for e in _rows(state, "outbox") if e.get("state") in UNSENT_STATES]
    oldest = min((e["created"] for e in outbox if e.get("created")), default=None)
    report["queued_replies"] = len(outbox)
    report["oldest_queued"] = oldest
    if oldest and now - parse_iso(oldest) > dt.timedelta(hours=1):
        needs.append(f"{len(outbox)} replies waiting, the oldest since {oldest}")
    tickets = [t for t in _rows(state, "tickets") if t.get("state") == "open"]
    overdue = [t for t in tickets if t.get("due") and t["due"] < iso(now)]
    report["open_tickets"] = len(tickets)
    report["overdue_tickets"] = sorted(int(t["number"]) for t in overdue)
    if overdue:
        needs.append(f"{len(overdue)} tickets overdue")
    report["quarantined_messages"] = quarantined_count(state_dir, now)
    report["needs_owner"] = needs
    return report


def _rows(state: dict[str, Any], table: str) -> list[dict[str, Any]]:
    rows = state.get(table) or {}
    return [r for r in rows.values() if isinstance(r, dict)] if isinstance(rows, dict) else []


def quarantined_count(state_dir: Path, now: dt.datetime, days: int = 30) -> int:
    """Messages set aside in the last ``days`` days (from the history)."""
    since = now - dt.timedelta(days=days)
    return sum(1 for r in History(state_dir / "history").read(since)
               if r.get("type") == "message" and r.get("state") == QUARANTINED)


def render(report: dict[str, Any]) -> list[str]:
    """The report as lines for a person."""
    running = f"running (pid {report['pid']})" if report["running"] else "NOT running"
    lines = [f"supportd: {running}; state in {report['state_dir']}"]
    if report.get("status_line"):
        lines.append(f"  now:              {report['status_line']}")
    lines.append(f"  last IMAP contact: {report.get('last_imap_contact') or 'never'}"
                 + (f"  PROBLEM: {report['imap_problem']}" if report.get("imap_problem") else ""))
    lines.append(f"  last SMTP contact: {report.get('last_smtp_contact') or 'never'}"
                 + (f"  PROBLEM: {report['smtp_problem']}" if report.get("smtp_problem") else ""))
    oldest = f", the oldest since {report['oldest_queued']}" if report["oldest_queued"] else ""
    lines.append(f"  queued replies:    {report['queued_replies']}{oldest}")
    lines.append(f"  quarantined:       {report['quarantined_messages']} in the last 30 days")
    overdue = report["overdue_tickets"]
    lines.append(f"  tickets:           {report['open_tickets']} open, {len(overdue)} overdue"
                 + (f" ({', '.join(f'#{n}' for n in overdue[:10])})" if overdue else ""))
    if report.get("last_error"):
        lines.append(f"  last error:        {report['last_error_at']}: {report['last_error']}")
    if report.get("state_error"):
        lines.append(f"  state:             {report['state_error']}")
    if report["needs_owner"]:
        lines.append("needs you: " + "; ".join(report["needs_owner"]))
    else:
        lines.append("all well")
    return lines
