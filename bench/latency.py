"""Acknowledgment latency: from a message's APPEND to its acknowledgment at the SMTP server.

``supportd run`` runs as a subprocess, waiting in IDLE. Messages arrive one by one: each is
appended when the previous one is acknowledged, marked handled, and 0.6 s have passed (the daemon
is back in IDLE and no notification timer started by the mark is still running), so every
message meets an idle daemon and a quiet server, as a shop's mail does.

In the same run a bare imapclient on a second connection sits in IDLE too; the time from each
APPEND to its ``EXISTS`` is the server's own floor (Dovecot waits a fixed 500 ms before it
notifies an IDLE client). ``ack - floor`` is what supportd adds.

    .venv/bin/python bench/latency.py --messages 300
    .venv/bin/python bench/latency.py --messages 100 --history 50000   # a shop running for years
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Servers,
    child_env,
    customer_mail,
    print_json,
    servers,
    summary_ms,
    supportd_command,
    wait_for_mail_to,
)
from bench.history import PER_DAY, build_state
from supportd.base.clock import SystemClock

READY_TIMEOUT = 20.0
ACK_TIMEOUT = 15.0
HANDLED_TIMEOUT = 10.0
# After the handled mark: the daemon is back in IDLE within ~20 ms, and the server's 500 ms
# notification timers started by the mark (in every IDLE session) have run out.
SETTLE_SECONDS = 0.6
HANDLED = b"$SupportdHandled"
APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
DECIDED_MS = re.compile(r"did=\S+.* \((\d+) ms\)$", re.MULTILINE)


class IdleWatcher:
    """A bare IDLE client: records when the server announces each new message (EXISTS)."""

    def __init__(self, servers: Servers) -> None:
        self.client = servers.imap()
        self.client.select_folder("INBOX")
        self.in_idle = threading.Event()
        self.stop = threading.Event()
        self.exists_at: dict[int, float] = {}  # message count -> monotonic time of the EXISTS
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="idle-watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.in_idle.wait(5.0):
            raise RuntimeError("the bare IDLE client did not enter IDLE")

    def _loop(self) -> None:
        client = self.client
        while not self.stop.is_set():
            client.idle()
            self.in_idle.set()
            try:
                for _ in range(600):  # bounded: at most ~60 s in one IDLE
                    responses = client.idle_check(timeout=0.1)
                    now = time.monotonic()
                    counts = [int(r[0]) for r in responses if len(r) > 1 and r[1] == b"EXISTS"]
                    if counts:
                        with self.arrived:
                            for count in counts:
                                self.exists_at.setdefault(count, now)
                            self.arrived.notify_all()
                        break
                    if self.stop.is_set():
                        break
            finally:
                self.in_idle.clear()
                client.idle_done()

    def wait_for(self, count: int, timeout: float) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: count in self.exists_at, timeout):
                raise TimeoutError(f"no EXISTS {count} within {timeout} s")
            return self.exists_at[count]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5.0)
        self.client.logout()


def with_history(world: Servers, messages: int) -> dict[str, Any]:
    """Start from the state ``messages`` of history leave (bench/history.py, 30 a day)."""
    client = world.imap()
    try:
        uidvalidity = int(client.select_folder("INBOX")[b"UIDVALIDITY"])
    finally:
        client.logout()
    return build_state(world.state_dir, messages, messages / PER_DAY, SystemClock().now(), uidvalidity)


def wait_until_ready(log_path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"supportd run exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        if "supportd running for" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise RuntimeError(f"supportd run did not start within {READY_TIMEOUT} s")


def wait_handled(client: Any, uid: int) -> None:
    """Until the daemon marked ``uid`` handled (it has finished that message)."""
    deadline = time.monotonic() + HANDLED_TIMEOUT
    while time.monotonic() < deadline:
        if HANDLED in client.get_flags([uid]).get(uid, ()):
            return
        time.sleep(0.01)
    raise TimeoutError(f"message {uid} was not marked handled within {HANDLED_TIMEOUT} s")


def one_message(servers: Servers, appender: Any, watcher: IdleWatcher, number: int) -> tuple[float, float, int]:
    """Append customer ``number``'s mail; (ack latency, IDLE floor) in seconds, and its UID."""
    if not watcher.in_idle.wait(5.0):
        raise RuntimeError("the bare IDLE client is not in IDLE")
    before = len(servers.sink.messages)
    response = appender.append("INBOX", customer_mail(number, tag="latency"))
    appended = time.monotonic()
    found = APPENDUID.search(response if isinstance(response, bytes) else b"")
    if found is None:
        raise RuntimeError(f"APPEND answered without APPENDUID: {response!r}")
    uid = int(found.group(1))
    ack = wait_for_mail_to(servers.sink, f"customer{number}@example.org", before, ACK_TIMEOUT)
    exists = watcher.wait_for(uid, ACK_TIMEOUT)  # nothing is ever expunged: message count == UID
    return ack.at_monotonic - appended, exists - appended, uid


def measure(messages: int, warmup: int = 2, history: int = 0) -> dict[str, Any]:
    with servers() as world:
        config = world.write_config()
        state = with_history(world, history) if history else {}
        log_path = world.root / "supportd-run.log"
        with log_path.open("wb") as log_file:
            daemon = subprocess.Popen(supportd_command("run", "--config", str(config)),
                                      stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                      env=child_env())
        watcher: IdleWatcher | None = None
        appender = world.imap()
        appender.select_folder("INBOX", readonly=True)
        try:
            wait_until_ready(log_path, daemon)
            watcher = IdleWatcher(world)
            watcher.start()
            acks, floors = [], []
            for number in range(warmup + messages):
                ack, floor, uid = one_message(world, appender, watcher, number)
                if number >= warmup:
                    acks.append(ack)
                    floors.append(floor)
                wait_handled(appender, uid)
                time.sleep(SETTLE_SECONDS)
        finally:
            if watcher is not None:
                watcher.close()
            appender.logout()
            daemon.terminate()
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(5)
        decided = [int(ms) for ms in DECIDED_MS.findall(log_path.read_text(errors="replace"))][warmup:]
    ack_ms, floor_ms = summary_ms(acks), summary_ms(floors)
    added = sorted(a - f for a, f in zip(acks, floors, strict=True))
    return {
        "messages": messages, "history": state,
        "ack_p50_ms": ack_ms["p50"], "ack_p99_ms": ack_ms["p99"], "ack_max_ms": ack_ms["max"],
        "idle_floor_p50_ms": floor_ms["p50"],
        "ack": ack_ms, "idle_floor": floor_ms,
        "ack_minus_floor": summary_ms(added),
        "decide_ms_p50": sorted(decided)[len(decided) // 2] if decided else None,
        "daemon_exit": daemon.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300, help="messages, one by one (default 300)")
    parser.add_argument("--history", type=int, default=0,
                        help="start from the state this many messages of history leave (default: a new shop)")
    args = parser.parse_args(argv)
    print_json(measure(args.messages, history=args.history))
    return 0


if __name__ == "__main__":
    sys.exit(main())
