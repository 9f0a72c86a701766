"""State on disk: a small hot ledger (``state.json``, open tickets folded into ``tickets.G.jsonl``) and
monthly history files.

Why it is built this way (measured):

* TinyDB (which supportd used first) rewrote its file in place; a kill during a write corrupted 6
  of 400 files. ``atomic_write`` writes a whole new file: temp file, fsync, rename, fsync of the
  folder. A kill at any moment leaves either the old or the new state. The previous generation is
  kept as ``state.json.prev`` so a damaged file can be recovered by hand. The format stays TinyDB's:
  ``{table: {doc id: document}}``.
* Most commits change a few rows, so a commit is a line of row changes appended to
  ``state.json.journal`` (fdatasync), and ``state.json`` is written whole only now and then
  (``AtomicStorage`` says when, and how a kill mid-line is told from damage). On a 3,000-mail
  backlog: 40 whole writes instead of 730 of 440 KB on average.
* A snapshot serialises ``state.json``; orjson does that 16 times faster than the standard
  library (0.43 ms against 6.85 ms for 2,000 open tickets, measured), which is why it is used. A
  table that did not change since the last snapshot is not serialised again: its JSON is kept.
* Writes by key go straight to the table's dictionary through an in-memory index (O(1)). The hot
  ledger holds only what is in flight (messages being handled, the outbox, pending confirmations,
  open tickets, today's counters), so the cost of one message does not grow with months of
  history. Finished records go to ``history/YYYY-MM.jsonl``, appended with one fdatasync per batch.
* Open tickets stay until a person keeps the promise, so thousands can be open; rewritten whole at
  every commit they made each commit O(open tickets) (20 ms at 10,000, 4 MB) and, held as Python
  dictionaries, cost 1.6 KB of memory each. So ``state.json`` holds only the tickets changed since
  the last *fold*; the others are in ``tickets.G.jsonl`` (``TicketBase``), kept in memory as their
  JSON bytes and decoded when read. When more than ``FOLD_AT`` tickets changed, a commit folds:
  it writes ``tickets.G+1.jsonl`` (atomically) with every open ticket, then ``state.json`` naming
  generation G+1 with none. ``state.json``'s rename stays the one commit point: a kill before it
  leaves the old ``state.json``, which names generation G, still on disk (G-1 is kept too, for
  ``state.json.prev``).
* A customer's mail is matched to its ticket by a Message-ID of the thread or by the customer
  (``supportd.act.tickets``); a scan of every ticket for that cost 33-73 ms a message at 10,000
  open. ``TicketIndex`` answers it from a table of 64-bit hashes (about 50 bytes a ticket), built
  once from the tickets (open and closed in the last 90 days) and kept current as they change.
* Two processes writing one state file corrupt it. The daemon and the CLI take ``state.lock``
  (flock) for each transaction, and reload the state when another process replaced it.
* A state file that cannot be read is reported and left alone, never silently replaced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from supportd.base.clock import Clock, iso
from supportd.base.errors import StateError
from supportd.service import faults

STATE_FILE = "state.json"
# The states a message record goes through (``supportd.pipeline``): claimed before it is parsed, decided,
# done once its replies are sent; quarantined after too many failures; vanished when the server lost it.
CLAIMED, DECIDED, DONE, QUARANTINED, VANISHED = "claimed", "decided", "done", "quarantined", "vanished"
TICKETS_BASE = "tickets.{}.jsonl"
# A commit folds the tickets into a new base file once more than this many changed since the last
# fold: a commit then writes at most FOLD_AT tickets, and a fold of 10,000 (4 MB, ~25 ms) comes
# once in FOLD_AT ticket changes. SUPPORTD_FOLD_TICKETS lowers it for the fault-injection tests.
FOLD_AT = int(os.environ.get("SUPPORTD_FOLD_TICKETS", "256"))
SCHEMA_VERSION = 1
# The journal is folded into a new state.json once it is as large as that was, or this (a snapshot then
# costs about as much as the lines it replaces, and reading the state back stays O(its size)).
JOURNAL_MIN_BYTES = 256 * 1024
FINGERPRINT_DAYS = 62
CLOSED_TICKET_DAYS = 90
# Each table's key, indexed in memory.
KEY_FIELDS = {"messages": "key", "outbox": "id", "pending": "id", "tickets": "number", "senders": "address",
              "escalations": "key"}
TABLES = tuple(KEY_FIELDS)
# A field that is looked up by its value for every message (``find(table, field=value)``), indexed in
# memory as the keys are: whether a message's fingerprint is in flight was a scan of the messages.
VALUE_FIELDS = {"messages": "fingerprint"}

Doc = dict[str, Any]


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def atomic_write(path: Path, data: bytes | Iterable[bytes], keep_previous: bool = False) -> None:
    """Replace ``path`` with ``data`` (bytes, or pieces of it) so that a crash leaves the old or the
    new content, never a mix."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:  # buffered: pieces need not be joined in memory first
            if isinstance(data, bytes):
                out.write(data)
            else:
                out.writelines(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if keep_previous and path.exists():
        previous = path.with_name(f"{path.name}.prev")
        link_temp = path.with_name(f".{path.name}.prev.tmp")
        with contextlib.suppress(FileNotFoundError):
            link_temp.unlink()
        os.link(path, link_temp)
        os.replace(link_temp, previous)
    os.replace(temp, path)
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TicketBase:
    """Open tickets as of the last fold: ``tickets.G.jsonl``, kept as JSON bytes, decoded when read.

    The file holds a line ``DOC_ID NUMBER JSON`` per ticket, in doc id order, and a last line
    ``#end COUNT`` (so a file cut short is known). It is written once, whole, and never changed;
    a ticket changed since is in ``state.json`` (which wins), one closed since is in ``removed``.
    """

    def __init__(self, generation: int = 0, rows: dict[str, bytes] | None = None,
                 numbers: dict[str, int] | None = None) -> None:
        self.generation = generation
        self.rows: dict[str, bytes] = rows or {}
        self.numbers: dict[str, int] = numbers or {}
        self.removed: set[str] = set()

    def live(self, doc_id: str) -> bool:
        return doc_id in self.rows and doc_id not in self.removed

    def doc(self, doc_id: str) -> Doc:
        found: Doc = orjson.loads(self.rows[doc_id])
        return found

    @staticmethod
    def path(state_path: Path, generation: int) -> Path:
        return state_path.with_name(TICKETS_BASE.format(generation))

    @classmethod
    def read(cls, state_path: Path, marker: Any) -> TicketBase:
        if not marker:
            return cls()
        try:
            generation = int(marker["generation"])
            removed = {str(r) for r in marker.get("removed", [])}
        except (TypeError, KeyError, ValueError) as exc:
            raise _damaged(state_path, f"its tickets_base entry is not readable: {marker!r:.100}") from exc
        path = cls.path(state_path, generation)
        rows: dict[str, bytes] = {}
        numbers: dict[str, int] = {}
        try:
            with path.open("rb") as handle:
                for line in handle:
                    if line.startswith(b"#end "):
                        if int(line[5:]) != len(rows):
                            raise ValueError(f"{len(rows)} tickets where the end line says {int(line[5:])}")
                        base = cls(generation, rows, numbers)
                        base.removed = removed
                        return base
                    doc_id, number, doc = line.rstrip(b"\n").split(b" ", 2)
                    key = doc_id.decode()  # one string for both dictionaries (10,000 tickets: 0.5 MB less)
                    rows[key] = doc
                    numbers[key] = int(number)
            raise ValueError("the file ends before its end line")
        except PermissionError as exc:
            raise _not_ours(path) from exc
        except (OSError, ValueError) as exc:
            raise _damaged(state_path, f"its open tickets, {path.name}, cannot be read ({exc})") from exc

    def lines(self) -> Iterator[bytes]:
        for doc_id in sorted(self.rows, key=int):
            yield b"%s %d %s\n" % (doc_id.encode(), self.numbers[doc_id], self.rows[doc_id])
        yield b"#end %d\n" % len(self.rows)


class TicketIndex:
    """Which tickets may hold a key: a thread Message-ID (lower case) or a customer, by ticket number.

    Built once from every ticket as an open-addressing hash table of 64-bit hashes and numbers in
    two arrays (at most 2/3 full: 10,000 tickets with two keys each, 0.5 MB, built without a Python
    object per key; a dict of strings took 3 MB), then kept current by ``add`` in a small dict
    until that holds as many keys as the table (the ledger then builds it again). It may name
    tickets that no longer hold the key (a ticket changed or closed since, a hash collision):
    callers check each ticket. It never misses one.
    """

    FIELDS = ("thread", "customer")

    def __init__(self, tickets: Iterable[Doc]) -> None:
        keys = array("q")
        numbers = array("q")
        for ticket in tickets:
            for key in self.keys(ticket):
                keys.append(self._hash(key))
                numbers.append(int(ticket["number"]))
        self.size = len(keys)
        self.mask = (1 << max(4, (self.size + self.size // 2).bit_length())) - 1  # at most 2/3 full
        self.slots = array("q", bytes(8 * (self.mask + 1)))  # 0: empty
        self.numbers = array("q", bytes(8 * (self.mask + 1)))
        for hashed, number in zip(keys, numbers, strict=True):
            at = hashed & self.mask
            while self.slots[at]:
                at = (at + 1) & self.mask
            self.slots[at], self.numbers[at] = hashed, number
        self.added: dict[int, set[int]] = {}

    @staticmethod
    def keys(ticket: Doc) -> Iterator[str]:
        if "customer" in ticket:
            yield f"customer:{ticket['customer']}"
        for message_id in ticket.get("thread", ()):
            yield f"thread:{message_id.lower()}"

    @staticmethod
    def _hash(key: str) -> int:
        return hash(key) or 1  # 0 marks an empty slot

    def add(self, ticket: Doc) -> None:
        if "number" in ticket:
            for key in self.keys(ticket):
                self.added.setdefault(self._hash(key), set()).add(int(ticket["number"]))

    def get(self, field: str, value: str) -> set[int]:
        key = self._hash(f"{field}:{value.lower() if field == 'thread' else value}")
        found = set(self.added.get(key, ()))
        at = key & self.mask
        while self.slots[at]:
            if self.slots[at] == key:
                found.add(self.numbers[at])
            at = (at + 1) & self.mask
        return found

    def outgrown(self) -> bool:
        return len(self.added) > max(4096, self.size)


def journal_path(state_path: Path) -> Path:
    return state_path.with_name(f"{state_path.name}.journal")


class AtomicStorage:
    """The hot state in memory; it reaches the disk on ``flush``: as a line in the journal, or whole.

    Most commits change a few rows: an SMTP round's commit marks eight replies ``committing``, a
    claim adds fifty messages. Rewriting the whole hot state for each (440 KB on average in a
    3,000-mail backlog, 12 commits a batch of 50) was a quarter of the daemon's time. So a commit
    appends its changes, row by row in the order they were made, as one line to
    ``state.json.journal`` and fdatasyncs it; ``state.json`` is written whole (atomically, as
    before) only when the journal has grown as large as it, at a ticket fold, and at the first
    commit after a start (so a line a kill cut short is never followed by another). A snapshot
    names its journal by a new random id; lines carry it, so lines left from before a snapshot (a
    kill between the rename and the journal's truncation) are skipped on reading. A line without
    its final newline was never committed (the kill came while it was written) and is ignored; any
    other line that cannot be read means the file is damaged (``StateError``, as for ``state.json``).

    Each keyed table's JSON is kept from the last snapshot and serialised again only once the table
    changed (``touch``). The snapshot is the same bytes as ``orjson.dumps(data)``.
    """

    def __init__(self, path: Path | None, data: dict[str, Any], base: TicketBase) -> None:
        self.path = path
        self.data = data
        self.base = base
        self.dirty = False
        self.changed: set[str] = set()  # keyed tables changed since their JSON was kept
        self.serialised: dict[str, bytes] = {}  # a keyed table's JSON as of the last flush
        self.ops: list[list[Any]] = []  # the row changes since the last flush, in order: the journal's next line
        self.journal_bytes = 0
        self.snapshot_bytes = 0
        self.snapshot_due = path is not None and (not path.exists() or _file_size(journal_path(path)) > 0)

    def touch(self, table: str) -> None:
        """Note a change to ``table`` (written with the next flush)."""
        self.dirty = True
        self.changed.add(table)

    def change(self, op: str, table: str, doc_id: str, value: Any = None) -> None:
        """Change a row and note it for the journal: ``put`` (the row, as it is at the flush), ``patch`` (the
        changed fields) or ``del``; ``apply_change`` does the same when the journal is read back."""
        apply_change(self.data, self.base, [op, table, doc_id, value])
        self.ops.append([op, table, doc_id, value])
        self.touch(table)

    def flush(self, snapshot: bool = False) -> bool:
        """Make the changes durable; ``snapshot`` writes ``state.json`` whole (and empties the journal), changed
        or not."""
        if not self.dirty and not snapshot:
            return False
        if self.path is not None:
            folded = len(self.data.get("tickets", {})) + len(self.base.removed) > FOLD_AT
            line = b"" if folded or snapshot or self.snapshot_due else self._journal_line()
            if line and self.journal_bytes + len(line) <= max(JOURNAL_MIN_BYTES, self.snapshot_bytes):
                self._append(journal_path(self.path), line)
            else:
                self._snapshot(self.path, folded)
        self.ops.clear()
        self.dirty = False
        return True

    def _journal_line(self) -> bytes:
        return orjson.dumps({"journal": self.data.get("journal"), "ops": self.ops}) + b"\n"

    def _append(self, path: Path, line: bytes) -> None:
        """Append one line, durably. A write that fails halfway (a full disk) is cut off again, and the next
        commit writes ``state.json`` whole: a later line must never follow a partial one."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        except OSError:
            self.snapshot_due = True
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        finally:
            os.close(fd)
        self.journal_bytes += len(line)

    def _snapshot(self, path: Path, folded: bool) -> None:
        if folded:
            self._fold(path)
        if self.base.generation:
            self.data["tickets_base"] = {"generation": self.base.generation,
                                         "removed": sorted(self.base.removed, key=int)}
        self.data["journal"] = os.urandom(8).hex()  # the lines that follow this snapshot carry it
        pieces = self._json_pieces()
        atomic_write(path, pieces, keep_previous=True)
        if folded:
            self._drop_bases(path, before=self.base.generation - 1)  # G-1: state.json.prev's
        self._empty_journal(journal_path(path))
        self.snapshot_bytes = sum(len(piece) for piece in pieces)
        self.snapshot_due = False

    def _empty_journal(self, path: Path) -> None:
        """Truncate the journal, durably, before the next line is appended (its lines name the old snapshot)."""
        existed = path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not existed:
            fsync_folder(path.parent)
        self.journal_bytes = 0

    def _json_pieces(self) -> list[bytes]:
        """``orjson.dumps(self.data)`` in pieces, reusing the JSON of each keyed table unchanged since the last
        flush (measured on a backlog's state of 438 KB: 0.74 ms whole, the outbox alone 0.08 ms)."""
        pieces = []
        for table, rows in self.data.items():
            if table not in KEY_FIELDS:  # meta and the ticket base's note: small, written whole each time
                pieces.append(orjson.dumps({table: rows})[1:-1])
                continue
            if table in self.changed or table not in self.serialised:
                self.serialised[table] = orjson.dumps({table: rows})[1:-1]
            pieces.append(self.serialised[table])
        self.changed.clear()
        return [b"{", b",".join(pieces), b"}"]

    def _fold(self, state_path: Path) -> None:
        """Every open ticket into ``tickets.G+1.jsonl``; ``state.json``, written next, names it."""
        overlay: dict[str, Doc] = self.data.get("tickets", {})
        old = self.base
        rows = {i: row for i, row in old.rows.items() if i not in old.removed and i not in overlay}
        numbers = {i: old.numbers[i] for i in rows}
        for doc_id, doc in overlay.items():
            # A copy: orjson 3.13 hands back its whole 4 KB buffer with every dumps (tracemalloc: 8 KB a
            # ticket row kept), which made a 3,000-message pass grow by ~11 KB a message; copied, 0.6 KB.
            rows[doc_id] = bytes(memoryview(orjson.dumps(doc)))
            numbers[doc_id] = int(doc["number"])
        base = TicketBase(old.generation + 1, rows, numbers)
        atomic_write(TicketBase.path(state_path, base.generation), base.lines())
        faults.point("tickets-folded")
        self.base = base
        self.data["tickets"] = {}
        self.changed.add("tickets")

    @staticmethod
    def _drop_bases(state_path: Path, before: int) -> None:
        for path in state_path.parent.glob(TICKETS_BASE.format("*")):
            generation = path.name.split(".")[1]
            if generation.isdigit() and int(generation) < before:
                path.unlink(missing_ok=True)


class NotOurs(StateError):
    """A state file this user may not read: another user's (a command run as root), not damaged."""


def _not_ours(path: Path) -> NotOurs:
    try:
        owner = str(path.stat().st_uid)
    except OSError:
        owner = "another user"
    return NotOurs(
        f"the state file {path} belongs to uid {owner} and this process (uid {os.geteuid()}) may not read "
        "it; it is not damaged. Give every file back to the folder's owner: "
        f"chown -R --reference={path.parent} {path.parent}"
    )


def _damaged(path: Path, what: str) -> StateError:
    return StateError(
        f"the state file {path} is damaged or unreadable ({what}). supportd has not changed it. "
        f"Run 'supportd recover' to keep it aside, restore the previous good copy "
        f"({path.name}.prev) and check it against the mailbox."
    )


def read_hot_state(path: Path) -> tuple[dict[str, Any], TicketBase]:
    """``state.json`` as stored and its ticket base, or ``StateError`` saying what is wrong."""
    if not path.exists():
        return {}, TicketBase()
    try:
        data = orjson.loads(path.read_bytes())
    except PermissionError as exc:
        raise _not_ours(path) from exc
    except (OSError, orjson.JSONDecodeError) as exc:
        raise _damaged(path, str(exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("meta", {}), dict):
        raise StateError(
            f"the state file {path} does not hold supportd state. supportd has not changed it. "
            "Check the 'paths: state' setting, or run 'supportd recover'."
        )
    base = TicketBase.read(path, data.get("tickets_base"))
    replay_journal(path, data, base)
    return data, base


def replay_journal(state_path: Path, data: dict[str, Any], base: TicketBase) -> None:
    """Apply the journal's lines written since ``state.json`` (see ``AtomicStorage``) to ``data``."""
    path = journal_path(state_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except PermissionError as exc:
        raise _not_ours(path) from exc
    except OSError as exc:
        raise _damaged(state_path, f"its journal cannot be read ({exc})") from exc
    *lines, _cut_short = raw.split(b"\n")  # after the last newline: a line a kill interrupted, never committed
    snapshot = data.get("journal")
    for number, line in enumerate(lines, start=1):
        try:
            entry = orjson.loads(line)
            if entry["journal"] == snapshot:
                for change in entry["ops"]:
                    apply_change(data, base, change)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise _damaged(state_path, f"line {number} of {path.name} is not readable ({exc})") from exc


def apply_change(data: dict[str, Any], base: TicketBase, change: list[Any]) -> None:
    """One row change, ``[op, table, doc id, value]``, made to the hot state: by the ledger as it happens
    (``AtomicStorage.change``) and again when the journal is read back."""
    op, table, doc_id, value = change
    rows = data.setdefault(table, {})
    if op == "put":
        rows[doc_id] = value
    elif op == "patch":
        if doc_id not in rows:  # a ticket of the base file: changed, it moves to state.json
            rows[doc_id] = base.doc(doc_id)
        rows[doc_id].update(value)
    elif op == "del":
        rows.pop(doc_id, None)
        if table == "tickets" and doc_id in base.rows:
            base.removed.add(doc_id)
    else:
        raise ValueError(f"unknown change {op!r}")


def read_state_file(path: Path) -> dict[str, Any]:
    """The whole state as one dictionary (every open ticket in ``tickets``), or ``StateError``."""
    data, base = read_hot_state(path)
    data.pop("tickets_base", None)
    data.pop("journal", None)
    if base.rows:
        overlay = data.get("tickets", {})
        tickets = {i: base.doc(i) for i in base.rows if base.live(i) and i not in overlay}
        tickets.update(overlay)
        data["tickets"] = dict(sorted(tickets.items(), key=lambda item: int(item[0])))
    return data


class History:
    """Finished records, one JSON object a line, one file a month: appends cost the same in any month."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.buffered: list[Doc] = []
        self.memory: list[Doc] = []

    def add(self, record: Doc) -> None:
        """Queue a record; it reaches the disk on ``flush`` (the ledger flushes before it commits)."""
        self.buffered.append(record)

    def flush(self) -> None:
        if not self.buffered:
            return
        if self.folder is None:
            self.memory.extend(self.buffered)
            self.buffered.clear()
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        by_month: dict[str, list[Doc]] = {}
        for record in self.buffered:
            by_month.setdefault(record["at"][:7], []).append(record)
        for month, records in by_month.items():
            self._append(self.folder / f"{month}.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in records))
        self.buffered.clear()

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a kill cut the last line short: start a fresh line
            os.write(fd, data)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def months(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.jsonl"))

    def read(self, since: dt.datetime, until: dt.datetime | None = None) -> Iterator[Doc]:
        """Records with ``since <= at < until``; a record written twice (crash before commit) counts once."""
        low, high = iso(since), iso(until) if until else "9999"
        seen: set[str] = set()
        for record in self._all(low[:7], high[:7]):
            if low <= record.get("at", "") < high:
                key = f"{record.get('type')}:{record.get('id')}"
                if key not in seen:
                    seen.add(key)
                    yield record

    def scan(self, since: dt.datetime) -> Iterator[Doc]:
        """Every record since ``since``, in the order written (repeats included), then the unflushed ones."""
        low = iso(since)
        for record in self._all(low[:7], "9999"):
            if record.get("at", "") >= low:
                yield record
        yield from self.buffered

    def _all(self, first_month: str, last_month: str) -> Iterator[Doc]:
        if self.folder is None:
            yield from self.memory
            return
        for month in self.months():
            if first_month <= month <= last_month:
                yield from _read_lines(self.folder / f"{month}.jsonl")


def _read_lines(path: Path) -> Iterator[Doc]:
    with path.open("rb") as handle:
        for line in handle:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut short by a kill; the full record was written again later
            if isinstance(record, dict):
                yield record


class Ledger:
    """The daemon's memory: what is in flight, what is promised, what was sent.

    Use ``with ledger.locked():`` around every read-modify-commit, and ``commit()`` after each step
    of the processing protocol (see ``supportd.service.pipeline``).
    """

    def __init__(self, state_dir: Path | None, clock: Clock) -> None:
        self.state_dir = state_dir
        self.clock = clock
        self.path = state_dir / STATE_FILE if state_dir else None
        self.history = History(state_dir / "history" if state_dir else None)
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._file_id: tuple[int, int, int, int] | None = None
        self._fingerprints: set[str] | None = None
        self._closed_tickets: dict[int, Doc] | None = None
        self._ticket_index: TicketIndex | None = None
        self._load(*(read_hot_state(self.path) if self.path else ({}, TicketBase())))

    @classmethod
    def open(cls, state_dir: Path, clock: Clock) -> Ledger:
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"cannot create the state folder {state_dir}: {exc}") from exc
        if not os.access(state_dir, os.W_OK):
            raise StateError(f"the state folder {state_dir} is not writable by this user")
        ledger = cls(state_dir, clock)
        ledger._file_id = ledger._current_file_id()
        return ledger

    @classmethod
    def in_memory(cls, clock: Clock) -> Ledger:
        """A ledger that never touches the disk (``supportd try`` writes no state)."""
        return cls(None, clock)

    # ------------------------------------------------------------ storage and locking

    def _load(self, data: dict[str, Any], base: TicketBase) -> None:
        data.setdefault("meta", {})
        self._ticket_index = None
        self.storage = AtomicStorage(self.path, data, base)
        self.doc_ids: dict[str, dict[Any, int]] = {
            name: {doc[field]: int(doc_id) for doc_id, doc in data.get(name, {}).items() if field in doc}
            for name, field in KEY_FIELDS.items()
        }
        self.by_value: dict[str, dict[str, set[str]]] = {table: {} for table in VALUE_FIELDS}
        for table in VALUE_FIELDS:
            for doc_id in data.get(table, {}):
                self._index_value(table, doc_id, add=True)
        tickets = self.doc_ids["tickets"]
        for doc_id, number in base.numbers.items():
            if base.live(doc_id) and number not in tickets:
                tickets[number] = int(doc_id)
        top = max(map(int, base.rows), default=0)
        self.next_doc_id = {name: max([*ids.values(), top if name == "tickets" else 0]) + 1
                            for name, ids in self.doc_ids.items()}
        meta = self.storage.data["meta"]
        if "1" not in meta:
            self.storage.change("put", "meta", "1", {"schema": SCHEMA_VERSION, "created": iso(self.clock.now())})

    def _current_file_id(self) -> tuple[int, int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size, _file_size(journal_path(self.path)))

    @contextlib.contextmanager
    def locked(self, timeout: float = 60.0) -> Iterator[Ledger]:
        """Hold the state lock; reload first if another process (the CLI) changed the file."""
        if self._lock_depth:  # already held by an outer block: it commits
            yield self
            return
        if self.state_dir is None:
            self._lock_depth = 1
            try:
                yield self
                self.commit()
            finally:
                self._lock_depth = 0
            return
        fd = os.open(self.state_dir / "state.lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise StateError(
                        f"another supportd process holds {self.state_dir}/state.lock; "
                        "try again in a moment"
                    ) from None
                time.sleep(0.05)
        self._lock_fd = fd
        self._lock_depth = 1
        try:
            if self._current_file_id() != self._file_id:  # another process wrote it: never work from a stale copy
                self._load(*(read_hot_state(self.path) if self.path else ({}, TicketBase())))
                self._file_id = self._current_file_id()
                self._fingerprints = self._closed_tickets = None  # read again from the history
            yield self
            self.commit()
        finally:
            self._lock_depth = 0
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def commit(self) -> None:
        """Make every change so far durable: history first, then the hot state."""
        try:
            self.history.flush()
            faults.point("history-written")
            if self.storage.flush():
                self._file_id = self._current_file_id()
        except OSError as exc:
            raise StateError(f"cannot write the state in {self.state_dir}: {exc.strerror} "
                             "(is the disk full or the folder read-only?)") from exc

    def forget_previous(self) -> None:
        """Make ``state.json.prev`` a copy of the committed state.

        Called after something secret left the state (a sent confirmation request and its code),
        so the previous generation does not keep it until the next change.
        """
        if self.path is None or not self.path.exists():
            return
        try:
            self.storage.flush(snapshot=True)  # state.json itself, not only the journal, without the secret
            self._file_id = self._current_file_id()
            atomic_write(self.path.with_name(f"{self.path.name}.prev"), self.path.read_bytes())
        except OSError as exc:
            raise StateError(f"cannot write the state in {self.state_dir}: {exc.strerror}") from exc

    # ------------------------------------------------------------ small helpers for the modules

    def get(self, table: str, **match: Any) -> Doc | None:
        key_field = KEY_FIELDS[table]
        if set(match) == {key_field}:  # by key: through the index, without reading the table
            doc_id = self.doc_ids[table].get(match[key_field])
            return self._doc(table, str(doc_id)) if doc_id is not None else None
        return next(iter(self._docs(table, match)), None)

    def find(self, table: str, where: Callable[[Doc], bool] | None = None, **match: Any) -> list[Doc]:
        """Documents whose fields equal ``match`` (and for which ``where`` holds), in doc id order.

        ``where`` keeps a scan of thousands of open tickets from holding them all at once.
        """
        return [doc for doc in self._docs(table, match) if where is None or where(doc)]

    def _doc(self, table: str, doc_id: str) -> Doc | None:
        """A copy of the document (changing it changes nothing until ``put``)."""
        row = self._rows(table).get(doc_id)
        if row is not None:
            return dict(row)
        base = self.storage.base
        return base.doc(doc_id) if table == "tickets" and base.live(doc_id) else None

    def _docs(self, table: str, match: dict[str, Any]) -> Iterator[Doc]:
        """Copies of the documents matching ``match``, in doc id order."""
        rows = self._rows(table)
        base = self.storage.base
        if table != "tickets" or not base.rows:
            indexed = self._by_value(table, match)
            if indexed is not None:  # a message's fingerprint among 150 in flight: 11 -> 1.9 us
                yield from (dict(rows[doc_id]) for doc_id in sorted(indexed, key=int))
            elif len(match) == 1:  # one field: no call a row (a batch's 100 messages: 240 -> 14 us)
                [(field, value)] = match.items()
                yield from (dict(row) for row in rows.values() if field in row and row[field] == value)
            else:
                yield from (dict(row) for row in rows.values() if _matches(row, match))
            return
        # A base ticket is decoded only when its JSON holds each wanted text field as orjson writes
        # it ('"customer":"ada@example.org"'); the decoded document is then checked as any other.
        # One needle at a time over the survivors (10,000 tickets by customer: 4.5 ms against 17-40 ms).
        found: Iterable[tuple[str, bytes]] = base.rows.items()
        for needle in (orjson.dumps({key: value})[1:-1] for key, value in match.items() if isinstance(value, str)):
            found = [(doc_id, raw) for doc_id, raw in found if needle in raw]
        candidates = [doc_id for doc_id, _raw in found if doc_id not in rows and doc_id not in base.removed]
        for doc_id in sorted([*rows, *candidates], key=int):
            row = rows.get(doc_id)
            if row is None:
                doc = base.doc(doc_id)
                if _matches(doc, match):
                    yield doc
            elif _matches(row, match):
                yield dict(row)

    def _by_value(self, table: str, match: dict[str, Any]) -> set[str] | None:
        """The doc ids matching ``match`` when it asks for one indexed field (``VALUE_FIELDS``), else None."""
        if len(match) != 1 or table not in VALUE_FIELDS:
            return None
        [(field, value)] = match.items()
        if field != VALUE_FIELDS[table] or not isinstance(value, str):
            return None
        return self.by_value[table].get(value, set())

    def _index_value(self, table: str, doc_id: str, add: bool) -> None:
        """Add (or drop) a row's indexed field value; only text values are indexed."""
        value = self._rows(table).get(doc_id, {}).get(VALUE_FIELDS[table])
        if not isinstance(value, str):
            return
        holders = self.by_value[table].setdefault(value, set())
        if add:
            holders.add(doc_id)
            return
        holders.discard(doc_id)
        if not holders:
            del self.by_value[table][value]

    def _change(self, op: str, table: str, doc_id: str, value: Any = None) -> None:
        """``storage.change``, keeping the index of ``VALUE_FIELDS`` current."""
        indexed = table in VALUE_FIELDS
        if indexed:
            self._index_value(table, doc_id, add=False)
        self.storage.change(op, table, doc_id, value)
        if indexed:
            self._index_value(table, doc_id, add=True)

    def put(self, table: str, key_field: str, doc: Doc) -> None:
        """Insert or replace the document whose ``key_field`` equals ``doc[key_field]``."""
        self._check_key(table, key_field)
        key = doc[key_field]
        doc_id = self.doc_ids[table].get(key)
        if doc_id is None:
            doc_id = self.next_doc_id[table]
            self.next_doc_id[table] += 1
            self.doc_ids[table][key] = doc_id
        self._change("put", table, str(doc_id), dict(doc))
        if table == "tickets":
            self._index_ticket(doc)

    def patch(self, table: str, key_field: str, key: Any, **changes: Any) -> None:
        self._check_key(table, key_field)
        doc_id = self.doc_ids[table].get(key)
        if doc_id is None:
            return
        self._change("patch", table, str(doc_id), changes)
        if table == "tickets" and not changes.keys().isdisjoint(TicketIndex.FIELDS):
            self._index_ticket(self._rows(table)[str(doc_id)])

    def remove(self, table: str, key_field: str, keys: Iterable[Any]) -> None:
        self._check_key(table, key_field)
        for key in set(keys):
            doc_id = self.doc_ids[table].pop(key, None)
            if doc_id is not None:
                self._change("del", table, str(doc_id))

    def _rows(self, table: str) -> dict[str, Doc]:
        """The table as ``state.json`` stores it ({doc id: document}); for tickets, those changed since the fold."""
        rows: dict[str, Doc] = self.storage.data.setdefault(table, {})
        return rows

    @staticmethod
    def _check_key(table: str, key_field: str) -> None:
        if KEY_FIELDS[table] != key_field:
            raise ValueError(f"the {table} table is keyed by {KEY_FIELDS[table]}, not {key_field}")

    def meta(self, key: str, default: Any = None) -> Any:
        return self.storage.data["meta"]["1"].get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        meta = self.storage.data["meta"]["1"]
        if meta.get(key) != value:
            meta[key] = value
            self.storage.change("put", "meta", "1", meta)

    def next_number(self, counter: str, start: int) -> int:
        """A number never handed out before (ticket numbers)."""
        number = int(self.meta(counter, start))
        self.set_meta(counter, number + 1)
        return number

    def record(self, record_type: str, record_id: str, /, **fields: Any) -> None:
        """Append a finished record to the history (flushed with the next commit)."""
        self.history.add({"type": record_type, "id": record_id, "at": iso(self.clock.now()), **fields})
        if record_type == "message" and self._fingerprints is not None and fields.get("fingerprint"):
            self._fingerprints.add(fields["fingerprint"])
        if record_type == "ticket" and self._closed_tickets is not None and "number" in fields:
            self._closed_tickets[int(fields["number"])] = dict(fields)
        if record_type == "ticket":
            self._index_ticket(fields)

    def ticket_numbers(self, field: str, value: str) -> set[int]:
        """Numbers of the tickets, open or closed in the last 90 days, that may have ``value`` as
        ``customer`` or among their ``thread`` Message-IDs (any case): never one too few, perhaps one
        too many, so check each ticket."""
        if self._ticket_index is None or self._ticket_index.outgrown():
            self._ticket_index = TicketIndex(self._all_tickets())
        return self._ticket_index.get(field, value)

    def _all_tickets(self) -> Iterator[Doc]:
        """Every open ticket, then every one closed in the last 90 days (a reopened one is in both)."""
        rows, base = self._rows("tickets"), self.storage.base
        yield from rows.values()
        yield from (base.doc(doc_id) for doc_id in base.rows if doc_id not in rows and base.live(doc_id))
        yield from self.closed_tickets().values()

    def _index_ticket(self, ticket: Doc) -> None:
        if self._ticket_index is not None:
            self._ticket_index.add(ticket)

    def closed_tickets(self) -> dict[int, Doc]:
        """Tickets closed in the last 90 days, by number (read from the history once, then kept current).

        Closed tickets live in the history, not in the hot state, so a commit does not grow with
        every ticket ever closed; this index is how a customer's reply still finds and reopens one.
        """
        if self._closed_tickets is None:
            since = self.clock.now() - dt.timedelta(days=CLOSED_TICKET_DAYS)
            self._closed_tickets = {int(r["number"]): r for r in self.history.scan(since)
                                    if r.get("type") == "ticket" and "number" in r}
        return self._closed_tickets

    def recent_fingerprints(self) -> set[str]:
        """Fingerprints of messages finished in the last two months (read once, then kept up to date)."""
        if self._fingerprints is None:
            since = self.clock.now() - dt.timedelta(days=FINGERPRINT_DAYS)
            self._fingerprints = {
                r["fingerprint"] for r in self.history.scan(since)
                if r.get("type") == "message" and r.get("fingerprint")
            }
        return self._fingerprints


def _matches(doc: Doc, match: dict[str, Any]) -> bool:
    """Every field in ``match`` present in ``doc`` with an equal value."""
    return all(key in doc and doc[key] == value for key, value in match.items())
