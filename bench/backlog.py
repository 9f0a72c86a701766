"""Backlog: thousands of messages already waiting when ``supportd once`` starts.

The messages are put in INBOX before the clock starts (MULTIAPPEND). Then ``supportd once`` runs
as a subprocess; messages per second is handled / the wall time of that process (start-up,
imports and connecting included), and the peak RSS is that process's own (VmHWM, see
``run_measured``); ``children_rss_mb`` is the peak of its read-ahead process
(``limits.read_ahead_processes``), whose CPU is in ``cpu_s`` with the main process's (``wait4``).
``startup_s`` is a ``supportd once`` over an empty inbox in the same setup, so
``msgs_per_s_after_startup`` shows the steady rate.

``--profile FILE`` runs the same pass under cProfile instead (slower; not timed) and prints the
functions with the most cumulative time.

    .venv/bin/python bench/backlog.py --messages 3000
    .venv/bin/python bench/backlog.py --messages 3000 --profile /tmp/backlog.prof
"""

from __future__ import annotations

import argparse
import pstats
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    append_many,
    customer_mail,
    print_json,
    read_ahead_limits,
    run_measured,
    servers,
    supportd_command,
)

HANDLED = re.compile(r"handled (\d+) messages, acknowledged (\d+), sent (\d+) mails, quarantined (\d+)")
ONCE_TIMEOUT = 900.0


def measure(messages: int, profile: Path | None = None, top: int = 40,
            read_ahead: int | None = None) -> dict[str, Any]:
    with servers() as world:
        config = str(world.write_config(**read_ahead_limits(read_ahead)))
        startup = run_measured(supportd_command("once", "--config", config), world.root, ONCE_TIMEOUT)
        client = world.imap()
        try:
            started = time.perf_counter()
            append_many(client, [customer_mail(n, tag="backlog") for n in range(messages)])
            append_seconds = time.perf_counter() - started
        finally:
            client.logout()
        command = supportd_command("once", "--config", config)
        if profile is not None:
            command[1:1] = ["-m", "cProfile", "-o", str(profile)]
        finished = run_measured(command, world.root, ONCE_TIMEOUT)
        if finished.returncode != 0:
            raise RuntimeError(f"supportd once failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
        found = HANDLED.search(finished.stdout)
        if found is None:
            raise RuntimeError(f"supportd once printed no summary:\n{finished.stdout}\n{finished.stderr[-3000:]}")
        handled, acknowledged, sent, quarantined = (int(g) for g in found.groups())
        received = len(world.sink.messages)
    result: dict[str, Any] = {
        "messages": messages,
        "handled": handled, "acknowledged": acknowledged, "sent": sent, "quarantined": quarantined,
        "received_by_smtp": received,
        "seconds": round(finished.seconds, 3),
        "backlog_msgs_per_s": round(handled / finished.seconds, 1),
        "rss_mb": round(finished.max_rss_kb / 1024, 1),
        # the read-ahead process (and multiprocessing's resource tracker): their own peaks, summed
        "children_rss_mb": round(finished.children_rss_kb / 1024, 1),
        "cpu_s": round(finished.cpu_seconds, 3),  # the process's and its reaped children's (the read-ahead's)
        "children_cpu_s": round(finished.children_cpu_seconds, 3),
        "startup_s": round(startup.seconds, 3),
        "startup_rss_mb": round(startup.max_rss_kb / 1024, 1),
        "msgs_per_s_after_startup": round(handled / max(1e-9, finished.seconds - startup.seconds), 1),
        "append_msgs_per_s": round(messages / append_seconds, 1),
    }
    if profile is not None:
        result["profiled"] = True  # cProfile slows it down: the rates above are not the figures
        print_profile(profile, top)
    return result


def print_profile(path: Path, top: int) -> None:
    """The ``top`` functions by cumulative time, then by own time, on stderr."""
    stats = pstats.Stats(str(path), stream=sys.stderr)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000, help="messages waiting (default 3000)")
    parser.add_argument("--profile", type=Path, help="run under cProfile, write the stats here, print the top")
    parser.add_argument("--top", type=int, default=40, help="functions to print with --profile")
    parser.add_argument("--read-ahead-processes", type=int, help="limits.read_ahead_processes (default: its default)")
    args = parser.parse_args(argv)
    print_json(measure(args.messages, args.profile, args.top, args.read_ahead_processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
