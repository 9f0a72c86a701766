"""Nothing lost, nothing sent twice: supportd killed at random points, servers going away, a damaged state.

Each trial runs the real ``supportd`` as a separate process against Dovecot and an SMTP server and
kills it with SIGKILL at a crash point chosen by a seeded random generator (see
``supportd/service/faults.py``), again and again, until it gets through. Then every customer message must
have been acknowledged exactly once, and still be in the mailbox, unread, marked handled.

Every behaviour runs in every run of the suite. The full soak (30 random-kill trials, 8 kills of the
running daemon, the whole corpus) runs in CI and on demand with ``SUPPORTD_SOAK=1`` (``.ci/run`` sets
it); otherwise the same tests run fewer repetitions (3 trials, 3 kills, every 8th corpus file) so
``./test.sh`` stays within minutes. ``SUPPORTD_FAULT_SEED`` and ``SUPPORTD_FAULT_TRIALS`` reproduce
or widen a run; the counts are printed at the end of the test session.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from supportd_testing.localmail import MailUser, write_supportd_config

from conftest import FAULT_STATS as STATS
from conftest import OWNER, SOAK, World, mail

SEED = int(os.environ.get("SUPPORTD_FAULT_SEED", "20261123"))
STATS["seed"] = SEED  # shown in the summary (conftest.fault_summary)
TRIALS = int(os.environ.get("SUPPORTD_FAULT_TRIALS", "30" if SOAK else "3"))
TIMED_KILLS = 8 if SOAK else 3
CORPUS_EVERY = 1 if SOAK else 8  # every Nth corpus file through the pipeline
MESSAGES_PER_TRIAL = 12
MAX_RUNS_PER_TRIAL = 40
CRASH_POINTS_PER_RUN = 40
# Every crash point in supportd (see faults.point calls); a test checks this list is complete.
# "reading" is reached in the read-ahead process only (a backlog of two batches or more): there a
# kill ends that process, and supportd reads the rest of the pass itself.
CRASH_POINTS = ("claimed", "fetched", "deciding", "decided", "staged", "released", "answered", "recorded",
                "copied", "done", "marked", "history-written", "tickets-folded", "reading")
# Open tickets fold into tickets.G.jsonl after 3 changes instead of 256, so every trial folds, and
# kills land before, during and after folds (supportd.state.ledger.FOLD_AT).
FOLD_ENV = {"SUPPORTD_FOLD_TICKETS": "3"}
WAIT = 30.0

@dataclass
class Mailbox:
    """One support mailbox (its own IMAP user, state folder and config) on the shared Dovecot."""

    world: World
    name: str
    extra: dict[str, dict[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user = MailUser(f"{self.name}@imap.test", "pw-" + self.name)
        if self.user.address not in self.world.dovecot.users:
            self.world.dovecot.add_user(self.user)
        self.folder = self.world.root / self.name
        self.folder.mkdir()
        self.customers: dict[str, str] = {}  # Message-ID -> customer address
        sections: dict[str, dict[str, object]] = {"smtp": {"timeout_seconds": 5, "retry_first_seconds": 0.2},
                                                  "limits": {"batch_size": 5}}
        for section, values in self.extra.items():
            sections.setdefault(section, {}).update(values)
        self.config = write_supportd_config(self.folder, self.world.dovecot, self.world.sink, self.user, sections)

    def deliver_customers(self, count: int, rng: random.Random) -> None:
        for number in range(count):
            address = f"{self.name}-c{number}@example.org"
            message_id = f"<{self.name}.{number}@example.org>"
            body = rng.choice([
                "Where is my order {n}? It has not arrived.",
                "The mug from order {n} arrived broken.",
                "Please cancel my order {n}.",
                "Hello, do you ship to Norway?",
            ]).format(n=77000 + number)
            self.deliver(mail(body, sender=address, subject=f"Question {number}", message_id=message_id))
            self.customers[message_id] = address

    def deliver_question(self, tag: str, number: int, text: str = "Question {n}") -> None:
        """A customer's question (tag.number@example.org), remembered as one that must be answered once."""
        address, message_id = f"{tag}{number}@example.org", f"<{tag}.{number}@example.org>"
        self.deliver(mail(text.format(n=number), sender=address, message_id=message_id))
        self.customers[message_id] = address

    def deliver_robot(self, number: int) -> None:
        self.deliver(mail("I am away.", sender=f"away{number}@example.org", subject="Automatic reply",
                          headers={"Auto-Submitted": "auto-replied"}))

    def deliver(self, raw: bytes) -> int:
        return self.world.dovecot.append(self.user, raw)

    def supportd(self, *args: str, crash_at: str = "", timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **FOLD_ENV, "SUPPORTD_CRASH_AT": crash_at}
        return subprocess.run([sys.executable, "-m", "supportd", *args, "--config", str(self.config)],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)

    def start_daemon(self) -> subprocess.Popen[bytes]:
        log = (self.folder / "daemon.log").open("ab")
        return subprocess.Popen([sys.executable, "-m", "supportd", "run", "--config", str(self.config)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **FOLD_ENV})

    def acks(self) -> Counter[str]:
        """How many replies each of our customer messages received."""
        counts: Counter[str] = Counter()
        for received in self.world.sink.messages:
            answered = str(received.message()["In-Reply-To"] or "")
            if answered in self.customers:
                counts[answered] += 1
        return counts

    def all_answered(self) -> bool:
        return set(self.acks()) == set(self.customers)

    def wait_until_answered(self, seconds: float) -> None:
        """Give a running daemon up to ``seconds`` to answer everyone (bounded; the checks come after)."""
        deadline = time.monotonic() + seconds
        while not self.all_answered() and time.monotonic() < deadline:
            time.sleep(0.2)

    def check_exactly_once(self, delivered: int) -> None:
        """Every customer answered once, every message still there, unread, marked handled."""
        acks = self.acks()
        lost = [m for m in self.customers if acks[m] == 0]
        twice = [m for m in self.customers if acks[m] > 1]
        flags = self.flags()
        STATS["messages"] += len(self.customers)
        STATS["lost"] += len(lost)
        STATS["duplicates"] += len(twice)
        STATS["deleted"] += delivered - len(flags)
        assert not lost, f"{self.name}: never acknowledged: {lost}"
        assert not twice, f"{self.name}: acknowledged more than once: {twice}"
        assert len(flags) == delivered, f"{self.name}: {delivered - len(flags)} messages gone from the mailbox"
        for uid, message_flags in flags.items():
            assert b"$SupportdHandled" in message_flags, f"{self.name}: UID {uid} not marked handled"
            assert b"\\Seen" not in message_flags and b"\\Deleted" not in message_flags
        ids = [str(m.message()["Message-ID"]) for m in self.world.sink.messages]
        assert len(ids) == len(set(ids)), "the same reply reached the SMTP server twice"

    def uidvalidity(self) -> int:
        client = self.world.dovecot.connect(self.user)
        try:
            return int(client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
        finally:
            client.logout()

    def flags(self) -> dict[int, tuple[bytes, ...]]:
        client = self.world.dovecot.connect(self.user)
        try:
            client.select_folder("INBOX", readonly=True)
            uids = client.search("ALL")
            return {uid: data[b"FLAGS"] for uid, data in client.fetch(uids, ["FLAGS"]).items()} if uids else {}
        finally:
            client.logout()


def run_until_through(box: Mailbox, rng: random.Random) -> int:
    """Run ``supportd once``, killed at a random crash point each time, until a run gets through."""
    kills = 0
    for _ in range(MAX_RUNS_PER_TRIAL):
        crash_at = f"*@{rng.randint(1, CRASH_POINTS_PER_RUN)}"
        result = box.supportd("once", crash_at=crash_at)
        if result.returncode == -signal.SIGKILL:
            kills += 1
            continue
        assert result.returncode == 0, result.stderr
        if box.all_answered():
            break
    else:
        missing = sorted(set(box.customers) - set(box.acks()))
        history = "".join(p.read_text() for p in (box.folder / "state" / "history").glob("*.jsonl"))
        keys = [line.split('"id":"')[1].split('"')[0] for line in history.splitlines()
                if any(m in line for m in missing) and '"type":"message"' in line]
        wanted = [line for line in history.splitlines() if any(m in line for m in missing)
                  or any(f'"for_key":"{k}"' in line for k in keys)]
        odd = [line for line in history.splitlines() if '"vanished"' in line or '"quarantined"' in line]
        state = (box.folder / "state" / "state.json").read_text()
        pytest.fail(f"{box.name}: not through after {MAX_RUNS_PER_TRIAL} runs; unanswered {missing}; "
                    f"history {wanted}; odd {odd}; flags {box.flags()}; hot {state[:1500]}")
    assert box.supportd("once").returncode == 0  # and once more, unharmed: nothing new is sent
    return kills


def test_sigkill_at_random_crash_points_loses_nothing_and_sends_nothing_twice(world: World) -> None:
    """Killed at seeded random points between any two steps, supportd still answers every customer exactly once."""
    rng = random.Random(SEED)
    world.dovecot.add_user(*(MailUser(f"t{trial}@imap.test", f"pw-t{trial}") for trial in range(TRIALS)))
    for trial in range(TRIALS):
        box = Mailbox(world, f"t{trial}")
        box.deliver_customers(MESSAGES_PER_TRIAL, rng)
        box.deliver_robot(trial)
        STATS["kills"] += run_until_through(box, rng)
        STATS["trials"] += 1
        box.check_exactly_once(MESSAGES_PER_TRIAL + 1)


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_sigkill_at_each_crash_point(world: World, crash_point: str) -> None:
    """Killed at this step (first, second and third time it is reached), supportd still answers everyone once."""
    box = Mailbox(world, f"p-{crash_point}")
    box.deliver_customers(7, random.Random(SEED))
    box.deliver_robot(0)
    for occurrence in (1, 2, 3):
        result = box.supportd("once", crash_at=f"{crash_point}@{occurrence}")
        STATS["kills"] += result.returncode == -signal.SIGKILL
    while not box.all_answered():
        assert box.supportd("once").returncode == 0
    assert box.supportd("once").returncode == 0
    STATS["trials"] += 1
    box.check_exactly_once(8)


def test_crash_point_list_is_complete() -> None:
    """Every crash point in the code is exercised by the test above."""
    import re

    source = "".join(p.read_text() for p in (Path(__file__).parents[2] / "supportd").rglob("*.py"))
    in_code = set(re.findall(r'faults\.point\("([a-z-]+)"', source)) - {"performing", "performed"}
    assert in_code == set(CRASH_POINTS)


def test_sigkill_at_random_times_while_running(world: World) -> None:
    """The daemon killed at random moments while mail streams in: every customer answered exactly once."""
    rng = random.Random(SEED + 1)
    box = Mailbox(world, "timed")
    delivered = 0
    for _ in range(TIMED_KILLS):
        daemon = box.start_daemon()
        start = len(box.customers)
        for number in range(start, start + 4):
            box.deliver_question("timed", number, "Where is order {n}?")
            delivered += 1
        time.sleep(rng.uniform(0.2, 1.2))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        STATS["timed_kills"] += 1
    assert box.supportd("once").returncode == 0
    deadline = time.monotonic() + WAIT
    while not box.all_answered() and time.monotonic() < deadline:
        assert box.supportd("once").returncode == 0
    box.check_exactly_once(delivered)


def test_poison_message_that_crashes_supportd_is_quarantined_and_the_queue_goes_on(world: World) -> None:
    """A message that kills supportd every time is set aside after 3 failures of its own; the others are answered."""
    box = Mailbox(world, "poison")
    box.deliver_customers(6, random.Random(SEED))
    box.deliver(mail("Crash me", sender="poison@example.org", subject="POISON pill"))
    for _ in range(12):
        result = box.supportd("once", crash_at="deciding~POISON")
        if result.returncode == 0 and box.all_answered():
            break
    flags = box.flags()
    quarantined = [uid for uid, f in flags.items() if b"$SupportdQuarantined" in f]
    assert len(quarantined) == 1
    alerts = [m.message() for m in world.sink.messages if OWNER in m.rcpt_tos]
    assert len(alerts) == 1 and "could not handle" in str(alerts[0]["Subject"])
    acks = box.acks()
    assert set(acks) == set(box.customers) and set(acks.values()) == {1}


def test_a_message_that_kills_the_read_ahead_process_and_supportd_ends_up_alone_and_quarantined(
        world: World) -> None:
    """Read ahead, a message kills that process; read here, it kills supportd: retried alone, set aside; others once."""
    box = Mailbox(world, "poison-ahead")
    box.deliver_customers(6, random.Random(SEED))
    box.deliver(mail("Crash me", sender="poison@example.org", subject="POISON pill"))  # in the 2nd batch of 5
    for number in range(3):
        box.deliver_question("after", number)
    runs = []
    for _ in range(12):
        result = box.supportd("once", crash_at="reading~POISON,deciding~POISON")
        runs.append(result)
        if result.returncode == 0 and box.all_answered():
            break
    assert "the read-ahead process died" in runs[0].stderr
    flags = box.flags()
    assert len([uid for uid, f in flags.items() if b"$SupportdQuarantined" in f]) == 1
    acks = box.acks()
    assert set(acks) == set(box.customers) and set(acks.values()) == {1}
    alerts = [m.message() for m in world.sink.messages if OWNER in m.rcpt_tos]
    assert len(alerts) == 1 and "could not handle" in str(alerts[0]["Subject"])


def test_dovecot_restarted_mid_run(world: World) -> None:
    """The IMAP server restarts while mail arrives: the daemon reconnects and answers everyone once."""
    box = Mailbox(world, "restart")
    daemon = box.start_daemon()
    try:
        for number in range(10):
            box.deliver_question("restart", number)
            if number == 4:
                world.dovecot.restart()
        box.wait_until_answered(seconds=60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
    box.check_exactly_once(10)


def test_smtp_server_down_then_up(world: World) -> None:
    """With the SMTP server down for the first part of a run, every reply arrives once it is back, none twice."""
    box = Mailbox(world, "smtpdown")
    world.sink.stop()
    daemon = box.start_daemon()
    try:
        for number in range(8):
            box.deliver_question("down", number)
        time.sleep(2.0)
        assert box.acks() == Counter()
        world.sink.start()
        box.wait_until_answered(seconds=60)
        time.sleep(1.0)  # anything that would come twice comes now
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
    box.check_exactly_once(8)


def test_truncated_state_file_is_reported_left_alone_and_recovered(world: World) -> None:
    """A damaged state file stops supportd with a clear message; 'supportd recover' carries on without re-answering."""
    box = Mailbox(world, "trunc")
    box.deliver_customers(5, random.Random(SEED))
    assert box.supportd("once").returncode == 0
    state = box.folder / "state" / "state.json"
    damaged = state.read_bytes()[: state.stat().st_size // 2]
    state.write_bytes(damaged)
    refused = box.supportd("once")
    assert refused.returncode == 3
    assert "damaged" in refused.stderr and "supportd recover" in refused.stderr
    assert state.read_bytes() == damaged
    assert box.supportd("recover").returncode == 0
    assert list((box.folder / "state").glob("state.json.damaged-*"))
    for number in range(5, 8):
        box.deliver_question("late", number, "Later question {n}")
    assert box.supportd("once").returncode == 0
    box.check_exactly_once(8)


def test_state_lost_entirely_is_rebuilt_from_the_mailbox(world: World) -> None:
    """Even with no good state left, handled mail keeps its mark and sent replies are found in Sent: no re-answers."""
    box = Mailbox(world, "lost")
    box.deliver_customers(4, random.Random(SEED))
    result = box.supportd("once", crash_at="marked@1")  # replies sent and copied; not all marks recorded
    assert result.returncode in (0, -signal.SIGKILL)
    for name in ("state.json", "state.json.prev"):
        (box.folder / "state" / name).write_bytes(b"{")
    assert box.supportd("once").returncode == 3
    assert box.supportd("recover").returncode == 0
    assert box.supportd("once").returncode == 0
    box.check_exactly_once(4)


def test_uidvalidity_change_does_not_answer_anyone_again(world: World) -> None:
    """When the server renumbers the folder, handled mail is recognised and only new mail is answered."""
    box = Mailbox(world, "renumber")
    box.deliver_customers(4, random.Random(SEED))
    assert box.supportd("once").returncode == 0
    before = box.uidvalidity()
    maildir = world.dovecot.mail_dir / box.user.address
    for path in list(maildir.glob("dovecot-uidlist")) + list(maildir.glob("dovecot.index*")):
        path.unlink()
    time.sleep(1.1)  # UIDVALIDITY is a timestamp in seconds
    world.dovecot.restart()
    box.deliver(mail("New after renumbering", sender="new@example.org", message_id="<renumber.new@example.org>"))
    box.customers["<renumber.new@example.org>"] = "new@example.org"
    assert box.uidvalidity() != before
    assert box.supportd("once").returncode == 0
    log = box.supportd("once")
    assert log.returncode == 0
    box.check_exactly_once(5)


def test_every_corpus_file_through_the_whole_pipeline(world: World, tmp_path: Path) -> None:
    """Every message of the shared corpus goes through IMAP, supportd and back: no crash, each handled or set aside."""
    from conftest import corpus_path

    corpus = corpus_path()
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix not in (".md", ".csv", ".rb", ".t")
                   and "LICENSE" not in p.name and "COPYING" not in p.name and "intents" not in p.parts
                   and p.name not in ("README", "MIT-LICENSE"))[::CORPUS_EVERY]
    box = Mailbox(world, "corpus", extra={"limits": {"batch_size": 50}})
    appended, refused = 0, []
    for path in files:
        try:
            box.deliver(path.read_bytes())
            appended += 1
        except Exception as exc:  # a message IMAP itself cannot carry (e.g. NUL bytes) never reaches supportd
            refused.append(f"{path.relative_to(corpus)}: {exc}")
    assert appended > 1200 // CORPUS_EVERY, refused
    for _ in range(5):
        result = box.supportd("once", timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    flags = box.flags()
    assert len(flags) == appended
    unfinished = [uid for uid, f in flags.items() if b"$SupportdHandled" not in f and b"$SupportdQuarantined" not in f]
    assert unfinished == []
    STATS["corpus"] = appended
    STATS["corpus_refused"] = len(refused)
    STATS["corpus_quarantined"] = sum(1 for f in flags.values() if b"$SupportdQuarantined" in f)
