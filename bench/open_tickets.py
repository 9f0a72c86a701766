"""Open tickets: what one message costs with 0 versus 10,000 tickets open in the hot state.

Open tickets stay in the hot state until a person keeps the promise, so a busy week, or a shop
that falls behind, leaves thousands of them there; the cost of handling a message must not grow
with them. For each size the state is seeded through ``supportd.state.ledger`` itself (tickets as
``tickets.new_ticket`` writes them, due in two days so none is overdue), then, on a fresh Dovecot:

* ``startup_s``: ``supportd once`` over an empty inbox (start-up, loading that state, the jobs);
* ``seconds``: ``supportd once`` over ``--messages`` new customer mails (each opens one more
  ticket, so the larger state grows further);
* ``per_message_ms`` = (seconds - startup_s) / messages: the pass's own cost of a message, every
  commit and fsync included; ``rss_mb`` that process's peak RSS.

``cost_ratio`` = per_message_ms(large) / per_message_ms(0) (goal: at most 1.2) and
``rss_growth_mb`` = rss_mb(large) - rss_mb(0) (goal: at most 10 MB for 10,000 tickets). The two
sizes run in turns, ``--repeat`` times; the figures are medians, with each run listed.

    .venv/bin/python bench/open_tickets.py --open 10000 --messages 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backlog import HANDLED
from bench.common import (
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
from supportd.act.tickets import FIRST_TICKET, OPEN
from supportd.base.clock import SystemClock, iso
from supportd.state.ledger import Ledger

RUN_TIMEOUT = 900.0
INTENTS = ("delivery_status", "defect", "other")


def seed_open_tickets(state_dir: Path, count: int) -> None:
    """``count`` open tickets in the hot state, written by the ledger as supportd writes them."""
    clock = SystemClock()
    now = clock.now()
    ledger = Ledger.open(state_dir, clock)
    with ledger.locked():
        for n in range(count):
            opened = now - dt.timedelta(minutes=n % 5000)
            ledger.put("tickets", "number", {
                "number": FIRST_TICKET + n, "customer": f"waiting{n}@example.net", "name": f"Waiting Customer {n}",
                "subject": ("Where is my order?", "Broken mug", "Question about sizes")[n % 3],
                "intent": INTENTS[n % 3], "state": OPEN, "opened": iso(opened),
                "due": iso(now + dt.timedelta(days=2)), "closed_at": None, "last_message": iso(opened),
                "messages": 1, "thread": [f"<seed.{n}.{opened.timestamp():.0f}@example.net>"], "escalated": [],
                "reopened": 0,
            })
        ledger.set_meta("next_ticket", FIRST_TICKET + count)


def seed_in_a_child(state_dir: Path, count: int) -> None:
    """Seed in a child process: Linux carries a process's peak RSS across exec into the processes
    it starts, so seeding here would count in every ``supportd once`` measured after it."""
    code = "import sys; from pathlib import Path; from bench.open_tickets import seed_open_tickets; " \
           "seed_open_tickets(Path(sys.argv[1]), int(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", code, str(state_dir), str(count)], check=True, env=child_env(),
                   timeout=RUN_TIMEOUT)


def one_run(open_tickets: int, messages: int) -> dict[str, Any]:
    with servers() as world:
        config = str(world.write_config())
        seed_in_a_child(world.state_dir, open_tickets)
        startup = _once(world, config)
        client = world.imap()
        try:
            append_many(client, [customer_mail(n, tag="open") for n in range(messages)])
        finally:
            client.logout()
        finished = _once(world, config)
        found = HANDLED.search(finished.stdout)
        handled = int(found.group(1)) if found else 0
        state_kb = sum(p.stat().st_size for p in world.state_dir.glob("*.json*") if p.is_file()) / 1024
    if handled != messages:
        raise RuntimeError(f"supportd once handled {handled} of {messages}:\n{finished.stderr[-3000:]}")
    return {
        "open_tickets": open_tickets, "startup_s": round(startup.seconds, 3), "seconds": round(finished.seconds, 3),
        "per_message_ms": round(1000 * (finished.seconds - startup.seconds) / messages, 3),
        "msgs_per_s": round(messages / finished.seconds, 1), "rss_mb": round(finished.max_rss_kb / 1024, 1),
        "startup_rss_mb": round(startup.max_rss_kb / 1024, 1), "state_files_kb": round(state_kb, 1),
    }


def _once(world: Servers, config: str) -> Finished:
    finished = run_measured(supportd_command("once", "--config", config), world.root, RUN_TIMEOUT)
    if finished.returncode != 0:
        raise RuntimeError(f"supportd once failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    return finished


def measure(open_tickets: int, messages: int, repeat: int) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for turn in range(repeat):
        sizes = (0, open_tickets) if turn % 2 == 0 else (open_tickets, 0)
        runs.extend(one_run(size, messages) for size in sizes)

    def median(size: int, key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r["open_tickets"] == size))

    empty = [r for r in runs if r["open_tickets"] == 0]
    pairs = list(zip(empty, [r for r in runs if r["open_tickets"] == open_tickets], strict=True))
    ratios = [round(big["per_message_ms"] / small["per_message_ms"], 2) for small, big in pairs]
    growths = [round(big["rss_mb"] - small["rss_mb"], 1) for small, big in pairs]
    return {
        "open_tickets": open_tickets, "messages": messages, "repeat": repeat,
        "per_message_ms_empty": median(0, "per_message_ms"),
        "per_message_ms_open": median(open_tickets, "per_message_ms"),
        "cost_ratio": round(statistics.median(ratios), 2), "cost_ratios": ratios,
        "rss_mb_empty": median(0, "rss_mb"), "rss_mb_open": median(open_tickets, "rss_mb"),
        "rss_growth_mb": round(statistics.median(growths), 1), "rss_growths_mb": growths,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=10000, help="open tickets in the larger state (default 10000)")
    parser.add_argument("--messages", type=int, default=1000, help="new messages per pass (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each size, in turns (default 3)")
    args = parser.parse_args(argv)
    print_json(measure(args.open, args.messages, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
