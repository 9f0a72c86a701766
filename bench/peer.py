"""Side by side: the closest peer and supportd on the same mailbox, in one run.

The peer is imapautofiler (YAML rules over IMAP: it reads each message's headers and moves it to
a folder by a header match; it sends nothing and keeps no state). The benchmark installs it from
PyPI into a throwaway venv in a temp folder (nothing of it enters this repository), then, per
round, on one fresh Dovecot:

* the same ``--messages`` customer mails are put into two mailboxes: the peer's and supportd's;
* ``imapautofiler`` sorts its mailbox with three rules (delivery questions, defects, the rest);
* ``supportd once`` handles its mailbox: parses every body, decides, opens a ticket, sends the
  acknowledgment over SMTP, copies it to Sent, keeps the ledger and marks the message handled.

Each rate is messages / the wall time of that process (start-up included, for both). The two
run in turns (the peer first in odd rounds, supportd first in even ones), so neither always gets
the warmer server. ``ratio`` = supportd's rate / the peer's, per round; the summary gives the
median and the spread over the rounds.

On a machine whose cores are shared, the rates move with the load; the CPU each message costs moves
much less. Each round also prints it in milliseconds a message (``peer_cpu_ms``,
``supportd_cpu_ms``): the program's own (``wait4``: with its reaped children, e.g. supportd's
read-ahead process, whose own peak RSS is ``supportd_children_rss_mb``), Dovecot's (its master's time plus that of the
imap processes it reaped, i.e. of the logins that ended), and this process's, where the SMTP sink
runs (for the peer, which sends nothing, that is the benchmark's own polling: the baseline).

    .venv/bin/python bench/peer.py --messages 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    SUPPORT_USER,
    Servers,
    append_many,
    customer_mail,
    group_cpu_seconds,
    own_cpu_seconds,
    print_json,
    read_ahead_limits,
    run_measured,
    servers,
    supportd_command,
)
from supportd_testing.localmail import LOOPBACK, MailUser

PEER = "imapautofiler"
PEER_VERSION = "1.14.0"  # the version the issue measured (190-196 messages/s on 3,000 mails)
PEER_USER = MailUser("sorter@example.com", "sorter-secret")
PEER_FOLDERS = ("Orders", "Defects", "Support")
HANDLED = re.compile(r"handled (\d+) messages, acknowledged (\d+), sent (\d+) mails")
RUN_TIMEOUT = 900.0
INSTALL_TIMEOUT = 300.0


@contextlib.contextmanager
def peer_installed(version: str = PEER_VERSION) -> Iterator[Path]:
    """imapautofiler in a throwaway venv (removed afterwards); yields its command."""
    folder = Path(tempfile.mkdtemp(prefix="sdb-peer-", dir="/tmp"))
    try:
        venv.create(folder / "venv", with_pip=False)  # pip comes from this venv: faster, same result
        python = folder / "venv" / "bin" / "python"
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                        "--disable-pip-version-check", f"{PEER}=={version}"],
                       check=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        yield folder / "venv" / "bin" / PEER
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_peer_config(world: Servers) -> Path:
    """The peer's rules: what a shop would sort by subject, and everything else to Support."""
    def move(header: str, substring: str, folder: str) -> dict[str, Any]:
        return {"headers": [{"name": header, "substring": substring}],
                "action": {"name": "move", "dest-mailbox": folder}}

    config = {
        "server": {"hostname": LOOPBACK, "port": world.dovecot.port, "ssl": False,
                   "username": PEER_USER.address, "password": PEER_USER.password},
        "mailboxes": [{"name": "INBOX", "rules": [
            move("subject", "where is my order", "Orders"),
            move("subject", "broken", "Defects"),
            move("to", "support@", "Support"),
        ]}],
    }
    path = world.root / "imapautofiler.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def peer_env() -> dict[str, str]:
    """The peer's environment: none of this checkout on its import path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def one_round(peer: Path, messages: int, peer_first: bool, read_ahead: int | None = None) -> dict[str, Any]:
    with servers() as world:
        world.dovecot.add_user(PEER_USER)
        mails = [customer_mail(n, tag="peer") for n in range(messages)]
        for user in (SUPPORT_USER, PEER_USER):
            client = world.dovecot.connect(user)
            try:
                append_many(client, mails)
            finally:
                client.logout()
        config = str(world.write_config(**read_ahead_limits(read_ahead)))
        peer_command = [str(peer), "--config-file", str(write_peer_config(world))]
        runs, servers_cpu = {}, {}
        for name in (("peer", "supportd") if peer_first else ("supportd", "peer")):
            before = _servers_cpu_seconds(world)
            if name == "peer":
                runs[name] = run_measured(peer_command, world.root, RUN_TIMEOUT, env=peer_env())
            else:
                runs[name] = run_measured(supportd_command("once", "--config", config), world.root, RUN_TIMEOUT)
            time.sleep(0.3)  # the imap process of its login ends and is reaped by Dovecot's master
            servers_cpu[name] = tuple(round(b - a, 2) for a, b in zip(before, _servers_cpu_seconds(world), strict=True))
            if runs[name].returncode != 0:
                raise RuntimeError(f"{name} failed ({runs[name].returncode}):\n{runs[name].stderr[-3000:]}")
        sorted_by_peer, left_in_inbox = _peer_outcome(world)
        found = HANDLED.search(runs["supportd"].stdout)
        if found is None:
            raise RuntimeError(f"supportd once printed no summary:\n{runs['supportd'].stdout}")
        handled, acknowledged, sent = (int(g) for g in found.groups())
        received = len(world.sink.messages)
    if sorted_by_peer != messages or left_in_inbox or handled != messages or received != messages:
        raise RuntimeError(f"not a like-for-like round: the peer sorted {sorted_by_peer} (left {left_in_inbox}), "
                           f"supportd handled {handled} and the SMTP server received {received} of {messages}")
    peer_rate = messages / runs["peer"].seconds
    supportd_rate = handled / runs["supportd"].seconds
    return {
        "first": "peer" if peer_first else "supportd",
        "peer_seconds": round(runs["peer"].seconds, 3), "peer_msgs_per_s": round(peer_rate, 1),
        "peer_rss_mb": round(runs["peer"].max_rss_kb / 1024, 1),
        "supportd_seconds": round(runs["supportd"].seconds, 3), "supportd_msgs_per_s": round(supportd_rate, 1),
        "supportd_rss_mb": round(runs["supportd"].max_rss_kb / 1024, 1),
        "supportd_children_rss_mb": round(runs["supportd"].children_rss_kb / 1024, 1),  # its read-ahead process
        "acknowledged": acknowledged, "sent": sent, "ratio": round(supportd_rate / peer_rate, 2),
        # CPU milliseconds a message: the program's own, Dovecot's, and this process's (the SMTP sink)
        "peer_cpu_ms": _per_message(runs["peer"].cpu_seconds, *servers_cpu["peer"], messages=messages),
        "supportd_cpu_ms": _per_message(runs["supportd"].cpu_seconds, *servers_cpu["supportd"], messages=messages),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _servers_cpu_seconds(world: Servers) -> tuple[float, float]:
    """(Dovecot's CPU seconds so far, this process's: the SMTP sink is one of its threads)."""
    return group_cpu_seconds(world.dovecot.pgid or 0), own_cpu_seconds()


def _per_message(program: float, dovecot: float, sink: float, messages: int) -> dict[str, float]:
    """CPU ms a message of the program, Dovecot (imap processes whose login ended) and the SMTP sink."""
    ms = {"program": program, "dovecot": dovecot, "smtp_sink": sink}
    result = {k: round(v * 1000 / messages, 2) for k, v in ms.items()}
    result["total"] = round(sum(ms.values()) * 1000 / messages, 2)
    return result


def _peer_outcome(world: Servers) -> tuple[int, int]:
    """(messages in the peer's folders, messages still in its INBOX)."""
    client = world.dovecot.connect(PEER_USER)
    try:
        moved = sum(int(client.folder_status(f, [b"MESSAGES"])[b"MESSAGES"])
                    for f in PEER_FOLDERS if client.folder_exists(f))
        left = int(client.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"])
    finally:
        client.logout()
    return moved, left


def measure(messages: int, rounds: int, version: str = PEER_VERSION, read_ahead: int | None = None) -> dict[str, Any]:
    with peer_installed(version) as peer:
        results = [one_round(peer, messages, peer_first=(n % 2 == 0), read_ahead=read_ahead) for n in range(rounds)]
    ratios = [r["ratio"] for r in results]
    return {
        "messages": messages, "rounds": rounds, "peer": f"{PEER} {version}",
        "peer_msgs_per_s": round(statistics.median(r["peer_msgs_per_s"] for r in results), 1),
        "supportd_msgs_per_s": round(statistics.median(r["supportd_msgs_per_s"] for r in results), 1),
        "ratio": round(statistics.median(ratios), 2), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "peer_cpu_ms_total": round(statistics.median(r["peer_cpu_ms"]["total"] for r in results), 2),
        "supportd_cpu_ms_total": round(statistics.median(r["supportd_cpu_ms"]["total"] for r in results), 2),
        "runs": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000, help="mails waiting in each mailbox (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh Dovecot (default 3)")
    parser.add_argument("--peer-version", default=PEER_VERSION, help=f"imapautofiler version (default {PEER_VERSION})")
    parser.add_argument("--read-ahead-processes", type=int, help="supportd's limits.read_ahead_processes")
    args = parser.parse_args(argv)
    print_json(measure(args.messages, args.rounds, args.peer_version, args.read_ahead_processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
