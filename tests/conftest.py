"""Real mail servers for the tests: a Dovecot and an SMTP sink per test, all state in one temp folder.

Nothing here mocks IMAP or SMTP. Each test that asks for ``world`` gets its own Dovecot (about
40 ms to start) with the support mailbox, an aiosmtpd sink that keeps every message supportd sends,
and a config file pointing supportd at both, on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from supportd.base.clock import Clock, SystemClock
from supportd.base.config import Config, load_config
from supportd.service.daemon import Daemon
from supportd.service.pipeline import PassReport
from supportd_testing.localmail import (
    LOCAL_OWNER,
    LOCAL_SUPPORT,
    Dovecot,
    MailUser,
    SmtpSink,
    dovecot_available,
    write_supportd_config,
)

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
SUPPORT = LOCAL_SUPPORT
OWNER = LOCAL_OWNER
# The fault soak's repetitions (tests/test_faults.py): full with SUPPORTD_SOAK=1 (CI), fewer otherwise.
SOAK = os.environ.get("SUPPORTD_SOAK", "") not in ("", "0")
FAULT_STATS: Counter[str] = Counter()  # filled by tests/test_faults.py, printed at the end


def corpus_missing(what: str) -> None:
    """Skip the test for lack of the shared corpus; under CI (``CI=true``) that is a failure, not a skip."""
    reason = f"{what} (CI puts ../shared beside the clone)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def corpus_path() -> Path:
    if not CORPUS.is_dir():
        corpus_missing(f"the shared corpus is not at {CORPUS}")
    return CORPUS


def need_corpus_file(path: Path) -> Path:
    """``path`` (a file under the shared corpus), or a skip (a failure under CI) where it is absent."""
    if not path.is_file():
        corpus_missing(f"{path} is not there")
    return path


def corpus_file(relative: str) -> Path:
    """One message file of the shared corpus (the test is skipped where the corpus is absent)."""
    path = CORPUS / relative
    if not path.is_file():
        corpus_missing(f"corpus file {relative} is not under {CORPUS}")
    return path


def mail(
    body: str = "Hello, where is my order 77120?",
    *,
    sender: str = "Ada Lovelace <ada@example.org>",
    to: str = f"Shop <{SUPPORT}>",
    subject: str = "Where is my order?",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A customer email as a mail client would send it."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="example.org")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


@dataclass
class World:
    """A support mailbox on a real Dovecot, a real SMTP server, and supportd's config for both."""

    root: Path
    dovecot: Dovecot
    sink: SmtpSink
    user: MailUser
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules_dir: Path = REPO / "rules"
    replies_dir: Path = REPO / "replies"
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.root / "supportd.yaml"

    def write_config(self, **sections: dict[str, Any]) -> Path:
        """Write supportd.yaml; each keyword adds to (or overrides keys of) that section."""
        for name, values in sections.items():
            self.sections.setdefault(name, {}).update(values)
        defaults = {"smtp": {"timeout_seconds": 5},
                    "paths": {"rules": str(self.rules_dir), "replies": str(self.replies_dir)}}
        merged = {name: {**defaults.get(name, {}), **self.sections.get(name, {})}
                  for name in {*defaults, *self.sections}}
        return write_supportd_config(self.root, self.dovecot, self.sink, self.user, merged)

    def add_rule_file(self, name: str, text: str) -> None:
        """Use a copy of the default rules with one more file ``name`` (and write the config)."""
        rules = self.root / "rules"
        if not rules.exists():
            shutil.copytree(REPO / "rules", rules)
        (rules / name).write_text(text)
        self.rules_dir = rules
        self.write_config()

    def config(self) -> Config:
        if not self.config_path.exists():
            self.write_config()
        return load_config(self.config_path)

    def deliver(self, raw: bytes, folder: str = "INBOX", arrived: dt.datetime | None = None) -> int:
        """A customer's email arrives in the support mailbox (at ``arrived``, default now); returns its UID."""
        return self.dovecot.append(self.user, raw, folder=folder, arrived=arrived)

    def daemon(self, clock: Clock | None = None) -> Daemon:
        daemon = Daemon(self.config(), clock or SystemClock())
        self.daemons.append(daemon)
        return daemon

    def once(self, clock: Clock | None = None) -> PassReport:
        return self.daemon(clock).run_once()

    def sent(self) -> list[EmailMessage]:
        return [m.message() for m in self.sink.messages]

    def sent_to(self, address: str) -> list[EmailMessage]:
        return [m.message() for m in self.sink.messages if address in m.rcpt_tos]

    def imap(self) -> Any:
        return self.dovecot.connect(self.user)

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        client = self.imap()
        try:
            client.select_folder(folder, readonly=True)
            return {uid: data[b"FLAGS"] for uid, data in client.fetch(client.search("ALL"), ["FLAGS"]).items()}
        finally:
            client.logout()

    def tickets(self) -> dict[int, dict[str, Any]]:
        """Every ticket by number: the open ones and those closed in the last 90 days."""
        from supportd.state.ledger import Ledger

        ledger = Ledger.open(self.root / "state", SystemClock())
        found = dict(ledger.closed_tickets())
        found.update({t["number"]: t for t in ledger.find("tickets")})
        return found

    def count(self, folder: str) -> int:
        client = self.imap()
        try:
            client.select_folder(folder, readonly=True)
            return len(client.search("ALL"))
        finally:
            client.logout()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp folder with a short path (Dovecot's sockets need one) that other users can enter."""
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def world(short_tmp: Path) -> Iterator[World]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed (the README's test command installs it)")
    user = MailUser(SUPPORT, "support-secret")
    dovecot = Dovecot(short_tmp / "dovecot", users=[user])
    sink = SmtpSink()
    dovecot.start()
    sink.start()
    world = World(root=short_tmp, dovecot=dovecot, sink=sink, user=user)
    try:
        yield world
    finally:
        for daemon in world.daemons:
            daemon.close()
        sink.stop()
        dovecot.stop()


def fault_summary(stats: Counter[str]) -> list[str]:
    """The fault-injection counts of tests/test_faults.py, as printed at the end of the session."""
    lines = []
    if stats["messages"]:
        lines.append(
            f"fault injection ({'full soak' if SOAK else 'quick; SUPPORTD_SOAK=1 for the full soak'}, "
            f"seed {stats['seed']}): {stats['trials']} kill trials, {stats['kills']} SIGKILLs at crash "
            f"points, {stats['timed_kills']} SIGKILLs at random times, {stats['messages']} customer messages, "
            f"{stats['lost']} lost, {stats['duplicates']} acknowledged twice, {stats['deleted']} deleted")
    if stats["corpus"]:
        lines.append(
            f"corpus through the pipeline: {stats['corpus']} messages, {stats['corpus_quarantined']} quarantined, "
            f"{stats['corpus_refused']} refused by IMAP itself, 0 lost, 0 crashes")
    return lines


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist (./test.sh), a worker hands its fault counts to the main process."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fault_stats"] = dict(FAULT_STATS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: add a finished worker's fault counts to this process's."""
    stats = getattr(node, "workeroutput", {}).get("fault_stats", {})
    seed = stats.pop("seed", 0)
    FAULT_STATS.update(stats)
    FAULT_STATS["seed"] = seed or FAULT_STATS["seed"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault-injection counts (trials, kills, lost, duplicates) after the tests."""
    for line in fault_summary(FAULT_STATS):
        terminalreporter.write_line(line)
