"""Open tickets: what one message costs with 0 versus 10,000 tickets open in the hot state.

Open tickets stay in the hot state until a person keeps the promise, so a busy week, or a shop
that falls behind, leaves thousands of them there; the cost of handling a message must not grow
with them. Two states are seeded through ``supportd.state.ledger`` itself (tickets as
``supportd.act.tickets`` writes them, due in two days so none is overdue), each with its own Dovecot:

* both hold the same ``ANSWERED`` (200) tickets a person answered (closed, in the history), so
  that the new mail can answer them; the larger one holds ``--open`` open tickets besides;
* the new mail is what a support mailbox gets: of every 10 messages, 3 are a customer's reply on
  an answered ticket (In-Reply-To the person's reply, References the thread: the lookup by thread
  Message-ID, which reopens the ticket), 1 is a customer writing "the third time" without a
  thread (the lookup by customer), 6 are new requests (each opens one more ticket);
* per round and state, in turns (the order alternates): the state folder is put back as seeded
  and the mailbox emptied (so every round starts from 0 and 10,000 open tickets, not from what
  earlier rounds opened), ``supportd once`` over the empty inbox (start-up, loading that state,
  the jobs), then over ``--messages`` new mails; per-message cost = (pass - start-up) / messages,
  every lookup, commit and fsync included, with the median start-up of that state's rounds (the
  same work every round: one start-up's own noise, 0.3 s on a loaded machine, would move a
  round's figure by 6%); ``rss_mb`` the pass's own peak RSS.

``cost_ratio`` is the median over ``--rounds`` rounds of per_message_ms(large) / per_message_ms(0)
of the same round (goal: at most 1.2), so a load that comes and goes on a shared machine moves
both sides of a ratio; ``cpu_ratio`` the same in the process's own CPU time (no waiting for the
disk, the servers or a busy machine's other jobs: steadier); ``rss_growth_mb`` the median of
rss_mb(large) - rss_mb(0) (goal: at most 10 MB for 10,000 tickets).

    .venv/bin/python bench/open_tickets.py --open 10000 --messages 1000 --rounds 7
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import email.policy
import email.utils
import shutil
import statistics
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backlog import HANDLED
from bench.common import (
    SUPPORT,
    Finished,
    Servers,
    append_many,
    child_env,
    customer_mail,
    print_json,
    run_measured,
    servers,
    supportd_command,
)
from supportd.act.tickets import CLOSED, FIRST_TICKET, OPEN, REPLIED
from supportd.base.clock import SystemClock, iso
from supportd.state.ledger import Ledger

RUN_TIMEOUT = 900.0
INTENTS = ("delivery_status", "defect", "other")
SUBJECTS = ("Where is my order?", "Broken mug", "Question about sizes")
ANSWERED = 200  # tickets a person answered, in both states: the new mail's replies and repeat customers
REPLIES, REPEATS = (0, 1, 2), (3,)  # of every 10 new mails (n % 10); the rest are new requests


def _ticket(number: int, customer: str, opened: dt.datetime, due: dt.datetime, thread: list[str]) -> dict[str, Any]:
    n = number - FIRST_TICKET
    return {"number": number, "customer": customer, "name": f"Customer {n}", "subject": SUBJECTS[n % 3],
            "intent": INTENTS[n % 3], "state": OPEN, "opened": iso(opened), "due": iso(due), "closed_at": None,
            "last_message": iso(opened), "last_customer_mail": iso(opened), "last_person_reply": None,
            "messages": 1, "thread": thread, "escalated": [], "reopened": 0}


def _original_id(k: int) -> str:
    return f"<orig.{k}@example.net>"


def _person_reply_id(k: int) -> str:
    return f"<person.{k}@shop.example>"


def _answered_customer(k: int) -> str:
    return f"answered{k}@example.net"


def seed_state(state_dir: Path, count: int, answered: int = ANSWERED) -> None:
    """``answered`` tickets a person answered (in the history) and ``count`` open tickets, written
    by the ledger as supportd writes them."""
    clock = SystemClock()
    now = clock.now()
    ledger = Ledger.open(state_dir, clock)
    with ledger.locked():
        for k in range(answered):
            opened = now - dt.timedelta(days=3, minutes=k)
            ticket = _ticket(FIRST_TICKET + k, _answered_customer(k), opened, opened + dt.timedelta(days=1),
                             [_original_id(k), _person_reply_id(k)])
            ticket.update(state=CLOSED, due=None, closed_at=iso(opened + dt.timedelta(hours=2)), outcome=REPLIED,
                          last_person_reply=iso(opened + dt.timedelta(hours=2)), person_replies=[_person_reply_id(k)])
            ledger.record("ticket", f"{ticket['number']}/0", **ticket)
        for n in range(count):
            opened = now - dt.timedelta(minutes=n % 5000)
            number = FIRST_TICKET + answered + n
            ledger.put("tickets", "number", _ticket(number, f"waiting{n}@example.net", opened,
                                                    now + dt.timedelta(days=2),
                                                    [f"<seed.{n}.{opened.timestamp():.0f}@example.net>"]))
        ledger.set_meta("next_ticket", FIRST_TICKET + answered + count)


def seed_in_a_child(state_dir: Path, count: int) -> None:
    """Seed in a child process: Linux carries a process's peak RSS across exec into the processes
    it starts, so seeding here would count in every ``supportd once`` measured after it."""
    code = "import sys; from pathlib import Path; from bench.open_tickets import seed_state; " \
           "seed_state(Path(sys.argv[1]), int(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", code, str(state_dir), str(count)], check=True, env=child_env(),
                   timeout=RUN_TIMEOUT)


def new_mail(n: int, answered: int = ANSWERED) -> bytes:
    """The ``n``th new mail: a reply on an answered ticket, a repeat customer, or a new request."""
    if n % 10 not in (*REPLIES, *REPEATS):
        return customer_mail(n, tag="open")
    k = (n * 7919) % answered
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = f"Customer {k} <{_answered_customer(k)}>"
    msg["To"] = f"Example Shop <{SUPPORT}>"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<open.{n}.{time.time_ns()}@example.net>"
    if n % 10 in REPLIES:
        msg["Subject"] = f"Re: {SUBJECTS[k % 3]}"
        msg["In-Reply-To"] = _person_reply_id(k)
        msg["References"] = f"{_original_id(k)} {_person_reply_id(k)}"
        msg.set_content(f"Hello,\n\nthanks, but the parcel for order {77000 + k} is still not here.\n\n"
                        f"Customer {k}\n\n> We sent it on Monday.\n")
    else:
        msg["Subject"] = "Still waiting"
        msg.set_content(f"Hi,\n\nthis is the third time I write: where is my order {77000 + k}?\n\nCustomer {k}\n")
    return msg.as_bytes()


def reset(world: Servers, seeded: Path) -> None:
    """The state folder as seeded, and no mail in any folder of the mailbox."""
    shutil.rmtree(world.state_dir)
    shutil.copytree(seeded, world.state_dir)
    client = world.imap()
    try:
        for _flags, _delimiter, folder in client.list_folders():
            client.select_folder(folder)
            found = client.search("ALL")
            if found:
                client.delete_messages(found)
                client.expunge()
    finally:
        client.logout()


def one_pass(world: Servers, config: str, size: int, first: int, messages: int) -> dict[str, Any]:
    """Start-up alone, then a pass over ``messages`` new mails (numbered from ``first``)."""
    reset(world, world.root / "seeded")
    startup = _once(world, config)
    client = world.imap()
    try:
        append_many(client, [new_mail(n) for n in range(first, first + messages)])
    finally:
        client.logout()
    finished = _once(world, config)
    found = HANDLED.search(finished.stdout)
    handled = int(found.group(1)) if found else 0
    if handled != messages:
        raise RuntimeError(f"supportd once handled {handled} of {messages}:\n{finished.stderr[-3000:]}")
    state_kb = sum(p.stat().st_size for p in world.state_dir.glob("*.json*") if p.is_file()) / 1024
    return {
        "open_tickets": size, "startup_s": round(startup.seconds, 3), "seconds": round(finished.seconds, 3),
        "startup_cpu_s": round(startup.cpu_seconds, 3), "cpu_s": round(finished.cpu_seconds, 3),
        "msgs_per_s": round(messages / finished.seconds, 1), "rss_mb": round(finished.max_rss_kb / 1024, 1),
        "startup_rss_mb": round(startup.max_rss_kb / 1024, 1), "state_files_kb": round(state_kb, 1),
    }


def _once(world: Servers, config: str) -> Finished:
    finished = run_measured(supportd_command("once", "--config", config), world.root, RUN_TIMEOUT)
    if finished.returncode != 0:
        raise RuntimeError(f"supportd once failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    return finished


def measure(open_tickets: int, messages: int, rounds: int) -> dict[str, Any]:
    """Both states side by side, ``rounds`` rounds of one pass each, in turns."""
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        worlds = {size: stack.enter_context(servers()) for size in (0, open_tickets)}
        configs = {}
        for size, world in worlds.items():
            configs[size] = str(world.write_config())
            seed_in_a_child(world.state_dir, size)
            shutil.copytree(world.state_dir, world.root / "seeded")
        for turn in range(rounds):
            for size in (0, open_tickets) if turn % 2 == 0 else (open_tickets, 0):
                runs.append({"round": turn, **one_pass(worlds[size], configs[size], size, turn * messages, messages)})
    for size in worlds:
        startup = statistics.median(r["startup_s"] for r in runs if r["open_tickets"] == size)
        startup_cpu = statistics.median(r["startup_cpu_s"] for r in runs if r["open_tickets"] == size)
        for run in (r for r in runs if r["open_tickets"] == size):
            run["per_message_ms"] = round(1000 * (run["seconds"] - startup) / messages, 3)
            run["per_message_cpu_ms"] = round(1000 * (run["cpu_s"] - startup_cpu) / messages, 3)

    def of(size: int, key: str) -> list[float]:
        return [r[key] for r in sorted(runs, key=lambda r: r["round"]) if r["open_tickets"] == size]

    def paired(key: str) -> list[float]:
        return [round(big / small, 3) for small, big in zip(of(0, key), of(open_tickets, key), strict=True)]

    ratios, cpu_ratios = paired("per_message_ms"), paired("per_message_cpu_ms")
    growths = [round(big - small, 1) for small, big in zip(of(0, "rss_mb"), of(open_tickets, "rss_mb"), strict=True)]
    return {
        "open_tickets": open_tickets, "messages": messages, "rounds": rounds, "answered_tickets": ANSWERED,
        "mail_mix": {"replies": len(REPLIES) / 10, "repeat_customers": len(REPEATS) / 10},
        "per_message_ms_empty": statistics.median(of(0, "per_message_ms")),
        "per_message_ms_open": statistics.median(of(open_tickets, "per_message_ms")),
        "cost_ratio": round(statistics.median(ratios), 2), "cost_ratio_min": min(ratios),
        "cost_ratio_max": max(ratios), "cost_ratios": ratios,
        "per_message_cpu_ms_empty": statistics.median(of(0, "per_message_cpu_ms")),
        "per_message_cpu_ms_open": statistics.median(of(open_tickets, "per_message_cpu_ms")),
        "cpu_ratio": round(statistics.median(cpu_ratios), 2), "cpu_ratio_min": min(cpu_ratios),
        "cpu_ratio_max": max(cpu_ratios), "cpu_ratios": cpu_ratios,
        "rss_mb_empty": statistics.median(of(0, "rss_mb")),
        "rss_mb_open": statistics.median(of(open_tickets, "rss_mb")),
        "rss_growth_mb": round(statistics.median(growths), 1), "rss_growths_mb": growths,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=10000, help="open tickets in the larger state (default 10000)")
    parser.add_argument("--messages", type=int, default=1000, help="new messages per pass (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="passes of each size, in turns (default 7)")
    args = parser.parse_args(argv)
    print_json(measure(args.open, args.messages, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
