"""The ledger: a kill at any moment leaves the last good state, and damage is reported, never papered over."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from supportd.base.clock import FakeClock
from supportd.base.errors import StateError
from supportd.state import ledger as ledger_module
from supportd.state.ledger import Ledger, read_state_file

START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
WRITER = textwrap.dedent("""
    import sys, pathlib, datetime as dt
    from supportd.base.clock import SystemClock
    from supportd.state.ledger import Ledger
    ledger = Ledger.open(pathlib.Path(sys.argv[1]), SystemClock())
    number = int(ledger.meta("last", 0))
    while True:
        with ledger.locked():
            number += 1
            ledger.put("outbox", "id", {"id": f"m{number % 300}", "n": number, "raw": "x" * 500})
            ledger.set_meta("last", number)
            ledger.record("message", f"k{number}", fingerprint=f"f{number}")
""")


def test_sigkill_during_writes_always_leaves_a_readable_state(tmp_path: Path) -> None:
    """Killed 40 times at random moments while committing, the state always opens and never goes back in time."""
    rng = random.Random(7)
    state = tmp_path / "state"
    last_seen = 0
    for _ in range(40):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(state)])
        time.sleep(rng.uniform(0.05, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if not (state / "state.json").exists():
            continue  # killed before its first commit (a slow start on a busy machine)
        json.loads((state / "state.json").read_text())
        ledger = Ledger.open(state, FakeClock(START))
        last = int(ledger.meta("last", 0))
        assert last >= last_seen
        last_seen = last
    assert last_seen > 0


def test_damaged_state_file_is_reported_and_left_alone(tmp_path: Path) -> None:
    """A state file that is not valid JSON stops supportd with a clear message; the file is untouched."""
    (tmp_path / "state.json").write_bytes(b'{"meta": {"1": {"schema": 1}}, "outb')
    with pytest.raises(StateError, match=r"damaged.*supportd recover"):
        Ledger.open(tmp_path, FakeClock(START))
    assert (tmp_path / "state.json").read_bytes() == b'{"meta": {"1": {"schema": 1}}, "outb'


def test_a_second_process_waits_for_the_lock(tmp_path: Path) -> None:
    """Two processes never write the state at once: the second waits, then sees the first one's change."""
    first = Ledger.open(tmp_path, FakeClock(START))
    second = Ledger.open(tmp_path, FakeClock(START))
    with first.locked():
        first.set_meta("owner", "first")
        with pytest.raises(StateError, match="another supportd process"), second.locked(timeout=0.2):
            pass
    with second.locked():
        assert second.meta("owner") == "first"


def test_history_goes_to_monthly_files_and_a_repeated_record_counts_once(tmp_path: Path) -> None:
    """Finished records land in history/YYYY-MM.jsonl; one written twice (crash before commit) is read once."""
    clock = FakeClock(START)
    ledger = Ledger.open(tmp_path, clock)
    with ledger.locked():
        ledger.record("message", "a", fingerprint="fa")
        ledger.record("message", "a", fingerprint="fa")
        clock.advance(days=10)
        ledger.record("message", "b", fingerprint="fb")
    assert sorted(p.name for p in (tmp_path / "history").iterdir()) == ["2026-11.jsonl", "2026-12.jsonl"]
    records = list(ledger.history.read(START - dt.timedelta(days=1)))
    assert [r["id"] for r in records] == ["a", "b"]


def test_a_line_cut_short_by_a_kill_does_not_spoil_the_history(tmp_path: Path) -> None:
    """A half-written last line is skipped, and the next record starts on a line of its own."""
    clock = FakeClock(START)
    ledger = Ledger.open(tmp_path, clock)
    with ledger.locked():
        ledger.record("message", "a")
    with (tmp_path / "history" / "2026-11.jsonl").open("ab") as handle:
        handle.write(b'{"type":"message","id":"cut')
    with ledger.locked():
        ledger.record("message", "b")
    assert [r["id"] for r in ledger.history.read(START - dt.timedelta(days=1))] == ["a", "b"]


def test_state_file_is_written_only_by_its_owner(tmp_path: Path) -> None:
    """The state folder and files are private to supportd's user (they hold customer addresses)."""
    ledger = Ledger.open(tmp_path / "state", FakeClock(START))
    with ledger.locked():
        ledger.set_meta("x", 1)
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0
    assert (tmp_path / "state" / "state.json").stat().st_mode & 0o077 == 0


def ticket(number: int, state: str = "open") -> dict[str, object]:
    return {"number": number, "customer": f"c{number}@example.org", "state": state, "due": "2026-11-25T10:00:00Z"}


def test_open_tickets_fold_into_a_base_file_and_read_back_the_same(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FOLD_AT changed tickets, a commit moves them to tickets.G.jsonl; every ticket reads back unchanged."""
    monkeypatch.setattr(ledger_module, "FOLD_AT", 5)
    ledger = Ledger.open(tmp_path, FakeClock(START))
    with ledger.locked():
        for number in range(1001, 1021):
            ledger.put("tickets", "number", ticket(number))
    assert (tmp_path / "tickets.1.jsonl").exists()
    assert json.loads((tmp_path / "state.json").read_text())["tickets"] == {}
    with ledger.locked():
        ledger.patch("tickets", "number", 1003, state="answered")
        ledger.remove("tickets", "number", [1004])
        ledger.put("tickets", "number", ticket(1021))
    for reader in (ledger, Ledger.open(tmp_path, FakeClock(START))):
        assert reader.get("tickets", number=1003) == {**ticket(1003), "state": "answered"}
        assert reader.get("tickets", number=1004) is None
        assert [t["number"] for t in reader.find("tickets", state="open")] == [
            n for n in range(1001, 1022) if n not in (1003, 1004)]
    whole = read_state_file(tmp_path / "state.json")
    assert sorted(t["number"] for t in whole["tickets"].values()) == [n for n in range(1001, 1022) if n != 1004]
    assert "tickets_base" not in whole


def test_killed_between_the_ticket_fold_and_the_commit_the_state_is_the_last_commit(tmp_path: Path) -> None:
    """A kill after the new tickets file is written but before state.json names it leaves the previous state."""
    script = textwrap.dedent("""
        import sys, pathlib
        from supportd.base.clock import SystemClock
        from supportd.state.ledger import Ledger
        ledger = Ledger.open(pathlib.Path(sys.argv[1]), SystemClock())
        for batch in range(3):
            with ledger.locked():
                for n in range(4):
                    number = 1000 + batch * 4 + n
                    ledger.put("tickets", "number", {"number": number, "state": "open"})
                ledger.set_meta("batch", batch)
    """)
    env = {**os.environ, "SUPPORTD_FOLD_TICKETS": "5", "SUPPORTD_CRASH_AT": "tickets-folded@1"}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, check=False)
    assert result.returncode == -signal.SIGKILL
    assert (tmp_path / "tickets.1.jsonl").exists()  # written, but not yet named by state.json
    ledger = Ledger.open(tmp_path, FakeClock(START))
    assert ledger.meta("batch") == 0
    assert [t["number"] for t in ledger.find("tickets")] == [1000, 1001, 1002, 1003]
    with ledger.locked():  # and the next fold writes generation 1 again, over the orphan
        for number in range(1004, 1010):
            ledger.put("tickets", "number", {"number": number, "state": "open"})
    assert len(Ledger.open(tmp_path, FakeClock(START)).find("tickets")) == 10


def test_a_damaged_tickets_file_is_reported_not_read_as_no_tickets(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A tickets file cut short stops supportd with the same clear message as a damaged state file."""
    monkeypatch.setattr(ledger_module, "FOLD_AT", 2)
    ledger = Ledger.open(tmp_path, FakeClock(START))
    with ledger.locked():
        for number in range(1001, 1006):
            ledger.put("tickets", "number", ticket(number))
    base = tmp_path / "tickets.1.jsonl"
    base.write_bytes(base.read_bytes()[:-20])
    with pytest.raises(StateError, match=r"damaged.*tickets\.1\.jsonl.*supportd recover"):
        Ledger.open(tmp_path, FakeClock(START))


def test_ticket_index_finds_every_ticket_by_thread_id_and_customer_through_folds_and_closing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After random puts, patches, closes and folds, the index names every ticket holding a key (open or closed)."""
    monkeypatch.setattr(ledger_module, "FOLD_AT", 7)
    rng = random.Random(18)
    ledger = Ledger.open(tmp_path, FakeClock(START))
    truth: dict[int, dict[str, object]] = {}  # the latest version of every ticket, open or closed
    for step in range(300):
        with ledger.locked():
            number = 1001 + rng.randrange(60)
            doc = {**ticket(number), "customer": f"c{rng.randrange(20)}@example.org",
                   "thread": [f"<M{number}.{rng.randrange(3)}@Example.org>", f"<shared{rng.randrange(5)}@x>"]}
            action = rng.choice(("put", "patch", "close"))
            if action == "put" or ledger.get("tickets", number=number) is None:
                ledger.put("tickets", "number", doc)
            elif action == "patch":
                ledger.patch("tickets", "number", number, thread=doc["thread"])
                doc = {**truth[number], "thread": doc["thread"]}
            else:
                doc = {**truth[number], "state": "closed"}
                ledger.remove("tickets", "number", [number])
                ledger.record("ticket", f"{number}/{step}", **doc)
            truth[number] = doc
        if step % 50 == 49:  # a fresh process reads the folds, the state and the history back
            ledger = Ledger.open(tmp_path, FakeClock(START))
        for field in ("customer", "thread"):
            wanted = {value for doc in truth.values() for value in
                      ([doc["customer"]] if field == "customer" else doc["thread"])}  # type: ignore[list-item]
            for value in wanted:
                holders = {n for n, doc in truth.items()
                           if value == doc["customer"] or value in doc.get("thread", [])}  # type: ignore[operator]
                assert holders <= ledger.ticket_numbers(field, value.upper() if field == "thread" else value)
    assert ledger.ticket_numbers("customer", "nobody@example.org") == set()


def test_every_commit_writes_every_change_of_every_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random puts, patches and removes over all tables, committed at random: a fresh process reads back exactly
    what the running one holds (a table's JSON is kept between commits and must follow each change)."""
    monkeypatch.setattr(ledger_module, "FOLD_AT", 9)
    rng = random.Random(20261201)
    ledger = Ledger.open(tmp_path, FakeClock(START))
    for step in range(400):
        table = rng.choice(ledger_module.TABLES)
        key_field = ledger_module.KEY_FIELDS[table]
        key = 1001 + rng.randrange(30) if table == "tickets" else f"k{rng.randrange(30)}"
        action = rng.choice(("put", "put", "patch", "remove", "meta"))
        if action == "put":
            doc = ticket(int(key)) if table == "tickets" else {key_field: key}
            ledger.put(table, key_field, {**doc, "step": step, "raw": "x" * rng.randrange(50)})
        elif action == "patch":
            ledger.patch(table, key_field, key, step=step, state=rng.choice(("queued", "sent")))
        elif action == "remove":
            ledger.remove(table, key_field, [key])
        else:
            ledger.set_meta(f"m{rng.randrange(3)}", step)
        if rng.random() < 0.3:
            ledger.commit()
            reader = Ledger.open(tmp_path, FakeClock(START))
            for name in ledger_module.TABLES:
                assert reader.find(name) == ledger.find(name), (step, name)
            assert [reader.meta(f"m{n}") for n in range(3)] == [ledger.meta(f"m{n}") for n in range(3)]


def test_find_by_one_field_is_find_by_every_field_it_names(tmp_path: Path) -> None:
    """A lookup by one field (the quick path) finds what the general match finds: equal values only, a missing
    field never equal to None, the rows in doc id order."""
    ledger = Ledger.open(tmp_path, FakeClock(START))
    rng = random.Random(1201)
    for number in range(60):
        doc: dict[str, object] = {"key": f"k{number}"}
        if rng.random() < 0.7:
            doc["fingerprint"] = rng.choice(("a", "b", None, 0, False, ""))
        ledger.put("messages", "key", doc)
    for value in ("a", "b", None, 0, False, "", "z"):
        every = [row for row in ledger.find("messages") if ledger_module._matches(row, {"fingerprint": value})]
        assert ledger.find("messages", fingerprint=value) == every, value


def test_a_fingerprint_is_found_through_puts_patches_removes_and_a_reopening(tmp_path: Path) -> None:
    """The fingerprint index (``VALUE_FIELDS``) finds what a scan of the messages finds, in doc id order."""
    ledger = Ledger.open(tmp_path, FakeClock(START))
    rng = random.Random(1202)
    values = ("a", "b", "c", "", None, 0)

    def check(checked: Ledger) -> None:
        for value in values:
            every = [row for row in checked.find("messages") if ledger_module._matches(row, {"fingerprint": value})]
            assert checked.find("messages", fingerprint=value) == every, value
            assert checked.get("messages", fingerprint=value) == (every[0] if every else None)

    for step in range(400):
        key = f"k{rng.randrange(40)}"
        choice = rng.random()
        if choice < 0.4:
            ledger.put("messages", "key", {"key": key, "fingerprint": rng.choice(values)})
        elif choice < 0.7:
            ledger.patch("messages", "key", key, fingerprint=rng.choice(values))
        elif choice < 0.8:
            ledger.patch("messages", "key", key, state="decided")
        else:
            ledger.remove("messages", "key", [key])
        if step % 50 == 0:
            ledger.commit()
        check(ledger)
    ledger.commit()
    check(Ledger.open(tmp_path, FakeClock(START)))


def tables_of(ledger: Ledger) -> dict[str, list[dict[str, object]]]:
    return {name: ledger.find(name) for name in ledger_module.TABLES}


def test_a_commit_of_a_few_rows_is_a_journal_line_and_state_json_stays(tmp_path: Path) -> None:
    """After the first (whole) write, a commit appends its changes to the journal; state.json is not rewritten,
    and a fresh process reads state.json and the journal back as the running one holds them."""
    ledger = Ledger.open(tmp_path, FakeClock(START))
    for n in range(50):
        ledger.put("outbox", "id", {"id": f"m{n}", "state": "queued", "raw": "x" * 1000})
    ledger.commit()
    snapshot = (tmp_path / "state.json").read_bytes()
    ledger.patch("outbox", "id", "m3", state="committing")
    ledger.remove("outbox", "id", ["m4"])
    ledger.put("tickets", "number", ticket(1001))
    ledger.commit()
    assert (tmp_path / "state.json").read_bytes() == snapshot
    assert 0 < (tmp_path / "state.json.journal").stat().st_size < 1000
    assert tables_of(Ledger.open(tmp_path, FakeClock(START))) == tables_of(ledger)
    assert read_state_file(tmp_path / "state.json")["outbox"] == ledger.storage.data["outbox"]


def test_a_journal_line_cut_short_by_a_kill_was_never_committed(tmp_path: Path) -> None:
    """A line without its newline (the kill came while it was written) is ignored; the first commit after the
    start writes state.json whole and empties the journal, so no line ever follows a cut one."""
    ledger = Ledger.open(tmp_path, FakeClock(START))
    ledger.put("outbox", "id", {"id": "m1", "state": "queued"})
    ledger.commit()
    ledger.patch("outbox", "id", "m1", state="committing")
    ledger.commit()
    with (tmp_path / "state.json.journal").open("ab") as journal:
        journal.write(b'{"journal":"x","ops":[["patch","outbox","1",{"state":"se')
    reopened = Ledger.open(tmp_path, FakeClock(START))
    assert reopened.find("outbox") == [{"id": "m1", "state": "committing"}]
    reopened.put("outbox", "id", {"id": "m2", "state": "queued"})
    reopened.commit()
    assert (tmp_path / "state.json.journal").stat().st_size == 0
    assert [e["id"] for e in Ledger.open(tmp_path, FakeClock(START)).find("outbox")] == ["m1", "m2"]


def test_journal_lines_from_before_a_snapshot_are_skipped(tmp_path: Path) -> None:
    """Killed between writing state.json whole and emptying the journal: the old lines name the old snapshot
    and are not applied again to the new one."""
    ledger = Ledger.open(tmp_path, FakeClock(START))
    ledger.put("outbox", "id", {"id": "m1", "tries": 0})
    ledger.commit()
    ledger.patch("outbox", "id", "m1", tries=1)
    ledger.commit()
    old_lines = (tmp_path / "state.json.journal").read_bytes()
    ledger.remove("outbox", "id", ["m1"])
    ledger.storage.flush(snapshot=True)
    (tmp_path / "state.json.journal").write_bytes(old_lines)
    assert Ledger.open(tmp_path, FakeClock(START)).find("outbox") == []


def test_a_damaged_journal_line_is_reported_and_recover_sets_it_aside(tmp_path: Path) -> None:
    """A complete line that cannot be read is damage, not a kill: supportd stops and says so; `supportd recover`
    keeps the journal aside with the damaged state and the state opens again."""
    from supportd.state.recover import recover_state

    ledger = Ledger.open(tmp_path / "state", FakeClock(START))
    ledger.put("outbox", "id", {"id": "m1"})
    ledger.commit()
    ledger.patch("outbox", "id", "m1", tries=1)
    ledger.commit()
    journal = tmp_path / "state" / "state.json.journal"
    journal.write_bytes(b"not json\n" + journal.read_bytes())
    with pytest.raises(StateError, match=r"line 1 of state.json.journal.*supportd recover"):
        Ledger.open(tmp_path / "state", FakeClock(START))

    class Config:
        state_dir = tmp_path / "state"

    assert recover_state(Config()) == 0  # type: ignore[arg-type]
    assert not journal.exists()
    assert Ledger.open(tmp_path / "state", FakeClock(START)).meta("recovering") is True


def test_the_journal_is_folded_into_state_json_before_it_outgrows_it(tmp_path: Path) -> None:
    """Hundreds of small commits: the journal never grows past the larger of state.json and its floor, so
    reading the state back stays proportional to the state."""
    ledger = Ledger.open(tmp_path, FakeClock(START))
    largest = 0
    for n in range(600):
        ledger.put("outbox", "id", {"id": f"m{n % 40}", "n": n, "raw": "y" * 2000})
        ledger.commit()
        largest = max(largest, (tmp_path / "state.json.journal").stat().st_size)
    floor = max(ledger_module.JOURNAL_MIN_BYTES, (tmp_path / "state.json").stat().st_size)
    assert 0 < largest <= floor
    assert tables_of(Ledger.open(tmp_path, FakeClock(START))) == tables_of(ledger)


def test_a_journal_line_a_full_disk_cut_short_is_removed_and_the_next_commit_is_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills halfway through a line: the commit fails with a clear error, the half line is cut off, and
    once there is room the next commit writes state.json whole, so the state reads back as committed."""
    import errno

    ledger = Ledger.open(tmp_path, FakeClock(START))
    ledger.put("outbox", "id", {"id": "m1", "state": "queued"})
    ledger.commit()
    ledger.patch("outbox", "id", "m1", state="committing")
    ledger.commit()
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", failing)
        return real_write(fd, bytes(data[: len(data) // 2]))

    def failing(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    ledger.patch("outbox", "id", "m1", state="sent")
    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StateError, match="disk full"):
        ledger.commit()
    monkeypatch.setattr(os, "write", real_write)
    assert Ledger.open(tmp_path, FakeClock(START)).find("outbox") == [{"id": "m1", "state": "committing"}]
    ledger.put("outbox", "id", {"id": "m2", "state": "queued"})
    ledger.commit()
    assert [(e["id"], e["state"]) for e in Ledger.open(tmp_path, FakeClock(START)).find("outbox")] == [
        ("m1", "sent"), ("m2", "queued")]
