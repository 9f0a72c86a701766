"""History: what one new message costs with 1,000 versus 50,000 messages of history in the state.

The state is built as months of real operation would leave it (the shapes supportd writes; see
``supportd.service.pipeline._finish``, ``supportd.state.ledger`` and ``supportd.act.tickets``):

* ``history/YYYY-MM.jsonl``: per message a ``message`` record and a ``reply`` record (the ack);
  an ``escalation`` and an owner ``reply`` for upset customers; ``pending`` outcomes for
  cancellations; a ``ticket`` record when a ticket closes and leaves the hot ledger
  (``tickets.save``); a weekly ``digest`` record;
* the hot ledger ``state.json``: what the real system keeps there: the open tickets, today's and
  yesterday's per-sender counters, escalations of the last 30 days, recent confirmations, and the
  meta record (ticket counter, cursor, digest week).

The shop receives ``--per-day`` messages a day (default 30), so 1,000 messages are ~33 days of
history and 50,000 are ~4.6 years: the history is what grows; the hot ledger holds what is open
(tickets still open 90 days after they fell due are set aside as stale). ``--same-span DAYS``
instead puts both sizes in the same span (a shop 50 times busier), which shows what a larger hot
ledger costs.

Measured for each size, against a real Dovecot and SMTP server:

* ``once_ms``: wall time of ``supportd once`` (a subprocess) handling one new message: start-up,
  loading the state, the jobs, the pass, the commits (median of ``--repeat``);
* ``per_message_ms``: the daemon's cost of one message with everything already open: noticing it
  (NOOP, SEARCH) and one ``Pipeline.run_pass()`` in this process (claim, parse, decide, send, copy
  to Sent, mark, archive; every commit and fsync included; median of ``--repeat``);
  ``per_message_cpu_ms`` is the CPU time of the same (no waiting for disk or servers), steadier
  when other work shares the machine;
* ``jobs_ms``: one ``Jobs.run_all()`` (the minutely and hourly work: overdue tickets, archiving,
  pruning), ``load_ms``: opening the ledger, ``commit_ms``: one commit of the hot ledger.

``history_cost_ratio`` = per_message_ms(large) / per_message_ms(small): what the running daemon
pays per message; ``history_cpu_ratio`` the same in CPU time; ``once_cost_ratio`` the same for
``supportd once``. The two sizes run side by side and are timed in turns.

    .venv/bin/python bench/history.py --small 1000 --large 50000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Servers, customer_mail, print_json, run_measured, servers, supportd_command
from supportd.act.tickets import STALE_DAYS
from supportd.base.clock import SystemClock, iso
from supportd.base.config import load_config
from supportd.service.daemon import Daemon
from supportd.state.ledger import Ledger

ESCALATION_DAYS = 30  # supportd.service.scheduler.ESCALATION_RECORD_DAYS
FIRST_TICKET = 1001
INTENTS = (("delivery_status", "where-is-my-order", 0.50), ("defect", "broken-or-damaged", 0.30),
           ("other", "anything-else", 0.15), ("cancellation", "cancel-order", 0.05))
ONCE_TIMEOUT = 300.0
PER_DAY = 30.0

Doc = dict[str, Any]


@dataclass
class Shop:
    """What months of operation leave behind: history records and the hot tables."""

    records: list[Doc] = field(default_factory=list)
    tickets: dict[int, Doc] = field(default_factory=dict)
    senders: dict[str, Doc] = field(default_factory=dict)
    escalations: list[Doc] = field(default_factory=list)
    pending: list[Doc] = field(default_factory=list)
    last_ticket: dict[str, int] = field(default_factory=dict)  # customer -> their latest ticket
    next_ticket: int = FIRST_TICKET


def build_state(state_dir: Path, messages: int, span_days: float, now: dt.datetime,
                uidvalidity: int, seed: int = 8) -> dict[str, Any]:
    """Write ``state_dir`` as ``messages`` messages over ``span_days`` would leave it; return sizes."""
    rng = random.Random(seed)
    shop = Shop()
    start = now - dt.timedelta(days=span_days)
    step = dt.timedelta(days=span_days) / messages
    old_uidvalidity = uidvalidity - 7  # the history's messages came in under an older UIDVALIDITY
    for number in range(messages):
        at = start + step * number + dt.timedelta(seconds=rng.uniform(0, step.total_seconds() * 0.5))
        _one_message(shop, rng, number, at, old_uidvalidity, now)
    _closed_to_history(shop, now)
    _weekly_digests(shop, start, now)
    hot = _hot_tables(shop, now, start, uidvalidity)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_bytes = json.dumps(hot, separators=(",", ":"), ensure_ascii=False).encode()
    (state_dir / "state.json").write_bytes(state_bytes)
    history_bytes = _write_history(state_dir / "history", shop.records)
    return {"messages": messages, "span_days": round(span_days, 1), "history_records": len(shop.records),
            "history_mb": round(history_bytes / 1e6, 2), "state_json_kb": round(len(state_bytes) / 1024, 1),
            "hot_tickets": len(hot["tickets"]), "open_tickets": sum(1 for t in shop.tickets.values()
                                                                    if t["state"] == "open")}


def _one_message(shop: Shop, rng: random.Random, number: int, at: dt.datetime, uidvalidity: int,
                 now: dt.datetime) -> None:
    customer = f"customer{rng.randrange(max(1, int(number * 0.6) + 1))}@example.org"
    intent, rule = _pick_intent(rng)
    message_id = f"<hist.{number}.{rng.getrandbits(48):x}@example.org>"
    latest = shop.tickets.get(shop.last_ticket.get(customer, 0))
    recent = latest is not None and dt.datetime.fromisoformat(latest["last_message"]) > at - dt.timedelta(days=7)
    if latest is not None and recent and rng.random() < 0.5:
        ticket = _join(latest, message_id, at)
        outcome, reply_kind = "joined its ticket", None
    else:
        ticket = _new_ticket(shop, rng, customer, intent, message_id, at, now)
        outcome, reply_kind = "acknowledged", ("confirm" if intent == "cancellation" else "ack")
    key = f"INBOX:{uidvalidity}:{number + 1}"
    done = at + dt.timedelta(milliseconds=rng.uniform(300, 900))
    angry = rng.random() < 0.03
    shop.records.append({
        "type": "message", "id": key, "at": iso(done), "state": "done", "fingerprint": f"mid:{message_id}",
        "message_id": message_id, "received": iso(at), "decided": iso(at + dt.timedelta(milliseconds=20)),
        "sender": customer, "primary_intent": intent, "intents": [intent], "explicit_request":
        intent if intent == "cancellation" else None, "rule": rule, "skip_reason": None,
        "ticket": ticket["number"], "auto_reply": reply_kind is not None, "confirmation": None,
        "held_action": "cancel_order" if intent == "cancellation" else None, "tentative": [],
        "matched_rules": [rule], "outcome": outcome, "angry": angry,
    })
    if reply_kind is not None:
        _reply_record(shop, rng, reply_kind, key, ticket["number"], at, done)
        _count_sender(shop, customer, at)
    if intent == "cancellation" and reply_kind is not None:
        _pending(shop, rng, ticket["number"], customer, at, now)
    if angry:
        _escalation(shop, rng, "angry", str(ticket["number"]), key, ticket["number"], at, done)


def _pick_intent(rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    for intent, rule, share in INTENTS:
        if roll < share:
            return intent, rule
        roll -= share
    return INTENTS[-1][0], INTENTS[-1][1]


def _new_ticket(shop: Shop, rng: random.Random, customer: str, intent: str, message_id: str,
                at: dt.datetime, now: dt.datetime) -> Doc:
    """A ticket as ``tickets.new_ticket`` writes it, closed as the owner would close it later."""
    number = shop.next_ticket
    shop.next_ticket += 1
    answered_at_once = intent == "delivery_status" and rng.random() < 0.5  # status found: no follow-up
    due = at + dt.timedelta(hours=rng.uniform(2, 40))
    closed = at if answered_at_once else at + dt.timedelta(hours=rng.uniform(1, 72))
    forgotten = not answered_at_once and rng.random() < 0.01
    is_open = forgotten or closed > now
    ticket = {
        "number": number, "customer": customer, "name": customer.split("@")[0].title(),
        "subject": "Where is my order?" if intent == "delivery_status" else f"About my {intent}",
        "intent": intent, "state": "open" if is_open else "closed", "opened": iso(at),
        "due": None if answered_at_once else iso(due), "closed_at": None if is_open else iso(closed),
        "last_message": iso(at), "messages": 1, "thread": [message_id],
        "escalated": ["overdue"] if is_open and due < now else [], "reopened": 0,
    }
    if not answered_at_once and not is_open:
        ticket["due"] = None  # tickets.close clears the due time
    shop.tickets[number] = ticket
    shop.last_ticket[customer] = number
    return ticket


def _join(ticket: Doc, message_id: str, at: dt.datetime) -> Doc:
    ticket["messages"] += 1
    ticket["last_message"] = iso(at)
    ticket["thread"] = [*ticket["thread"], message_id][-20:]
    return ticket


def _reply_record(shop: Shop, rng: random.Random, kind: str, key: str, ticket: int,
                  at: dt.datetime, done: dt.datetime) -> None:
    reply_id = f"<sd.{kind}.{ticket}.{rng.getrandbits(48):012x}.{rng.getrandbits(64):016x}@shop.example>"
    shop.records.append({
        "type": "reply", "id": reply_id, "at": iso(done), "kind": kind, "for_key": key, "ticket": ticket,
        "state": "sent", "created": iso(at + dt.timedelta(milliseconds=20)),
        "sent_at": iso(at + dt.timedelta(milliseconds=60)), "tries": 0, "last_error": "",
    })


def _count_sender(shop: Shop, customer: str, at: dt.datetime) -> None:
    day = at.date().isoformat()
    record = shop.senders.get(customer)
    if record is None or record["day"] != day:
        record = {"address": customer, "day": day, "acks": 0, "notice_sent": False, "bad_tokens": 0}
    record["acks"] += 1
    shop.senders[customer] = record


def _pending(shop: Shop, rng: random.Random, ticket: int, customer: str, at: dt.datetime,
             now: dt.datetime) -> None:
    expires = at + dt.timedelta(hours=72)
    outcome = "done" if rng.random() < 0.7 else "expired"
    finished = at + dt.timedelta(hours=rng.uniform(0.5, 20)) if outcome == "done" else expires
    pending_id = f"p{ticket}"
    doc = {"id": pending_id, "action": "cancel_order", "params": {"order_number": "77120", "email": customer},
           "address": customer, "token_hash": f"{rng.getrandbits(256):064x}", "created": iso(at),
           "expires": iso(expires), "state": "waiting" if finished > now else outcome, "ticket": ticket,
           "clarified": False, "attempts": 0, "result": "", "next_at": None}
    if finished <= now:
        shop.records.append({"type": "pending", "id": pending_id, "at": iso(finished), "action": "cancel_order",
                             "outcome": outcome, "ticket": ticket})
    if expires >= now - dt.timedelta(days=ESCALATION_DAYS):
        shop.pending.append(doc)


def _escalation(shop: Shop, rng: random.Random, cause: str, subject: str, key: str, ticket: int,
                at: dt.datetime, done: dt.datetime) -> None:
    escalation_key = f"{cause}:{subject}"
    shop.records.append({"type": "escalation", "id": escalation_key, "at": iso(done), "cause": cause})
    shop.escalations.append({"key": escalation_key, "cause": cause, "at": iso(done)})
    _reply_record(shop, rng, "owner", key, ticket, at, done)


def _closed_to_history(shop: Shop, now: dt.datetime) -> None:
    """``tickets.save``: a ticket leaves the hot ledger for the history when it closes, and
    ``tickets.set_aside_stale`` closes one still open 90 days after it fell due."""
    for number, ticket in list(shop.tickets.items()):
        due = dt.datetime.fromisoformat(ticket["due"]) if ticket.get("due") else None
        if ticket["state"] == "open" and due and due + dt.timedelta(days=STALE_DAYS) < now:
            ticket.update(state="closed", outcome="stale", due=None,
                          closed_at=iso(due + dt.timedelta(days=STALE_DAYS, minutes=30)))
        if ticket["state"] != "closed":
            continue
        record_id = f"{number}/{ticket.get('reopened', 0)}"
        shop.records.append({"type": "ticket", "id": record_id, "at": ticket["closed_at"], **ticket})
        del shop.tickets[number]


def _weekly_digests(shop: Shop, start: dt.datetime, now: dt.datetime) -> None:
    moment = start + dt.timedelta(days=7)
    while moment < now:
        shop.records.append({"type": "digest", "id": iso(moment), "at": iso(moment),
                             "week": f"{(moment - dt.timedelta(days=7)).date()} to {moment.date()}"})
        moment += dt.timedelta(days=7)


def _hot_tables(shop: Shop, now: dt.datetime, start: dt.datetime, uidvalidity: int) -> dict[str, Any]:
    """The document ``state.json`` holds (TinyDB's format): {table: {doc_id: doc}}."""
    two_days = (now - dt.timedelta(days=1)).date().isoformat()
    cutoff = iso(now - dt.timedelta(days=ESCALATION_DAYS))

    def table(docs: list[Doc]) -> dict[str, Doc]:
        return {str(i): doc for i, doc in enumerate(docs, start=1)}

    meta = {"schema": 1, "created": iso(start - dt.timedelta(days=1)),
            "cursor": {"folder": "INBOX", "uidvalidity": uidvalidity, "high": 0},
            "next_ticket": shop.next_ticket, "digest_last_week": iso(now)}
    return {
        "meta": {"1": meta}, "messages": {}, "outbox": {},
        "tickets": table(list(shop.tickets.values())),
        "senders": table([s for s in shop.senders.values() if s["day"] >= two_days]),
        "escalations": table([e for e in shop.escalations if e["at"] >= cutoff]),
        "pending": table(shop.pending),
    }


def _write_history(folder: Path, records: list[Doc]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    by_month: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: str(r["at"])):
        by_month[record["at"][:7]].append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    written = 0
    for month, lines in by_month.items():
        data = ("\n".join(lines) + "\n").encode()
        (folder / f"{month}.jsonl").write_bytes(data)
        written += len(data)
    return written


# ---------------------------------------------------------------------------------------- timing


class SizedShop:
    """One size of history on its own servers, ready to time a new message in both ways."""

    def __init__(self, world: Servers, messages: int, span_days: float) -> None:
        self.world = world
        self.config = world.write_config()
        self.sizes = build_state(world.state_dir, messages, span_days, SystemClock().now(), _uidvalidity(world))
        self.load_ms, self.commit_ms = _ledger_costs(world.state_dir)
        self.once_ms: list[float] = []
        self.pass_ms: list[float] = []
        self.pass_cpu_ms: list[float] = []
        self.jobs_ms = 0.0
        self.daemon: Daemon | None = None
        self.count = 0

    def time_once(self) -> None:
        """``supportd once`` for one new message: the whole process's wall time."""
        before = self._deliver("once")
        command = supportd_command("once", "--config", str(self.config))
        finished = run_measured(command, self.world.root, ONCE_TIMEOUT)
        if finished.returncode != 0 or len(self.world.sink.messages) != before + 1:
            raise RuntimeError(f"supportd once did not answer the one message:\n{finished.stderr[-3000:]}")
        self.once_ms.append(finished.seconds * 1000)

    def start_daemon(self) -> None:
        """The daemon's objects in this process, connected, its jobs run, one message handled to warm up."""
        self.daemon = Daemon(load_config(self.config))
        self.daemon.mailbox.connect()
        started = time.perf_counter()
        self.daemon.jobs.run_all()
        self.jobs_ms = (time.perf_counter() - started) * 1000
        self._one_pass()

    def time_pass(self) -> None:
        wall, cpu = self._one_pass()
        self.pass_ms.append(wall)
        self.pass_cpu_ms.append(cpu)

    def _one_pass(self) -> tuple[float, float]:
        """What the daemon does for one new message: notice it (NOOP, SEARCH), then one pass."""
        assert self.daemon is not None
        daemon = self.daemon
        before = self._deliver("pass")
        started, cpu_started = time.perf_counter(), time.thread_time()
        high = int((daemon.ctx.ledger.meta("cursor") or {}).get("high", 0))
        if not daemon.mailbox.wait(0.0, lambda: False, above=high):
            raise RuntimeError("the new message was not noticed")
        report = daemon.pipeline.run_pass()
        wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        self.world.sink.wait_for(before + 1, 10.0)
        if report.handled != 1:
            raise RuntimeError(f"the pass handled {report.handled} messages, not 1")
        return wall * 1000, cpu * 1000

    def _deliver(self, tag: str) -> int:
        """A new customer's message in INBOX; returns how many mails the SMTP sink had before."""
        self.count += 1
        before = len(self.world.sink.messages)
        self.world.dovecot.append("support@shop.example", customer_mail(100000 + self.count, tag=tag))
        return before

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.close()

    def result(self) -> dict[str, Any]:
        return {**self.sizes, "once_ms": _median(self.once_ms), "per_message_ms": _median(self.pass_ms),
                "per_message_cpu_ms": _median(self.pass_cpu_ms),
                "per_message_spread_ms": [round(min(self.pass_ms), 1), round(max(self.pass_ms), 1)],
                "jobs_ms": round(self.jobs_ms, 1), "load_ms": round(self.load_ms, 1),
                "commit_ms": round(self.commit_ms, 1)}


def _uidvalidity(world: Servers) -> int:
    client = world.imap()
    try:
        return int(client.select_folder("INBOX")[b"UIDVALIDITY"])
    finally:
        client.logout()


def _ledger_costs(state_dir: Path) -> tuple[float, float]:
    """Opening the ledger, and one commit of it (forced: the state marked changed)."""
    started = time.perf_counter()
    ledger = Ledger.open(state_dir, SystemClock())
    loaded = time.perf_counter()
    ledger.storage.dirty = True
    ledger.commit()
    committed = time.perf_counter()
    return (loaded - started) * 1000, (committed - loaded) * 1000


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def measure(small: int, large: int, repeat: int, per_day: float, same_span: float | None) -> dict[str, Any]:
    """Both sizes side by side, timed in turns (small, large, small, ...) so that the other load
    on the machine, which drifts, falls on both alike."""
    def span(messages: int) -> float:
        return same_span if same_span else messages / per_day

    with contextlib.ExitStack() as stack:
        shops = []
        for messages in (small, large):
            shop = SizedShop(stack.enter_context(servers()), messages, span(messages))
            stack.callback(shop.close)
            shops.append(shop)
        for _ in range(repeat):
            for shop in shops:
                shop.time_once()
        for shop in shops:  # after the ``once`` runs: they replace the state file under the daemon
            shop.start_daemon()
        for _ in range(repeat):
            for shop in shops:
                shop.time_pass()
        low, high = (shop.result() for shop in shops)
    return {
        "history_cost_ratio": round(high["per_message_ms"] / low["per_message_ms"], 2),
        "history_cpu_ratio": round(high["per_message_cpu_ms"] / low["per_message_cpu_ms"], 2),
        "once_cost_ratio": round(high["once_ms"] / low["once_ms"], 2),
        "model": f"same span {same_span} days" if same_span else f"{per_day} messages a day",
        "small": low, "large": high,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000, help="messages of history, small (default 1000)")
    parser.add_argument("--large", type=int, default=50000, help="messages of history, large (default 50000)")
    parser.add_argument("--repeat", type=int, default=7, help="new messages timed per size (default 7)")
    parser.add_argument("--per-day", type=float, default=PER_DAY, help="the shop's messages a day (default 30)")
    parser.add_argument("--same-span", type=float, metavar="DAYS",
                        help="put both sizes in this many days instead (a busier shop, a larger hot ledger)")
    args = parser.parse_args(argv)
    print_json(measure(args.small, args.large, args.repeat, args.per_day, args.same_span))
    return 0


if __name__ == "__main__":
    sys.exit(main())
