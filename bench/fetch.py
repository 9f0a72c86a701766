"""FETCH: ``Mailbox.stored`` + ``Mailbox.fetch`` over a backlog, supportd's parser against imapclient's.

The messages are put in a real Dovecot's INBOX; then each round asks for all of them once with
each parser, alternating which goes first, on the same connection (the mail is in Dovecot's cache
and the OS's after the first round; the first round is not counted). The figures are the medians of
the wall time (``_ms``) and of this process's CPU time (``cpu_ms``); the server's own time is in the
wall time of both. ``imapclient`` is the earlier code: ``client.fetch`` with its parser.

    .venv/bin/python bench/fetch.py --messages 3000 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_many, customer_mail, print_json, servers
from supportd.base.config import load_config
from supportd.intake.inbox import Mailbox


def imapclient_fetch(box: Mailbox, uids: list[int], items: bytes) -> dict[int, dict[bytes, Any]]:
    """The earlier ``Mailbox._fetch``: imapclient's ``fetch``, parsed by imapclient."""
    return box._client().fetch(uids, items.decode().strip("()").split())  # type: ignore[no-any-return]


def measure(messages: int, rounds: int) -> dict[str, Any]:
    with servers() as world:
        client = world.imap()
        try:
            append_many(client, [customer_mail(n, tag="fetch") for n in range(messages)])
        finally:
            client.logout()
        box = Mailbox(load_config(world.write_config()).imap)
        box.connect()
        try:
            uids = box.unhandled_uids()
            times: dict[str, dict[str, list[float]]] = {name: {"stored": [], "fetch": [], "cpu": []}
                                                        for name in ("supportd", "imapclient")}
            answers: dict[str, Any] = {}
            original = Mailbox._fetch
            parsers: dict[str, Callable[..., dict[int, dict[bytes, Any]]]] = {
                "supportd": original, "imapclient": imapclient_fetch}
            for round_ in range(rounds + 1):
                order = ["supportd", "imapclient"] if round_ % 2 else ["imapclient", "supportd"]
                for name in order:
                    Mailbox._fetch = parsers[name]  # type: ignore[method-assign]
                    try:
                        cpu = time.process_time()
                        started = time.perf_counter()
                        stored = box.stored(uids)
                        middle = time.perf_counter()
                        raws = box.fetch(uids)
                        ended = time.perf_counter()
                        cpu = time.process_time() - cpu
                    finally:
                        Mailbox._fetch = original  # type: ignore[method-assign]
                    answers[name] = (stored, raws)
                    if round_:
                        times[name]["stored"].append(middle - started)
                        times[name]["fetch"].append(ended - middle)
                        times[name]["cpu"].append(cpu)
            if answers["supportd"] != answers["imapclient"]:
                raise RuntimeError("the two parsers disagree")
        finally:
            box.close()
    result: dict[str, Any] = {"messages": len(uids), "rounds": rounds}
    for name, figures in times.items():
        result[f"{name}_stored_ms"] = round(statistics.median(figures["stored"]) * 1000, 1)
        result[f"{name}_fetch_ms"] = round(statistics.median(figures["fetch"]) * 1000, 1)
        result[f"{name}_cpu_ms"] = round(statistics.median(figures["cpu"]) * 1000, 1)
    for part in ("stored", "fetch", "cpu"):
        result[f"{part}_ratio"] = round(result[f"imapclient_{part}_ms"] / result[f"supportd_{part}_ms"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000, help="messages in the mailbox (default 3000)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of each parser (default 7)")
    args = parser.parse_args(argv)
    print_json(measure(args.messages, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
