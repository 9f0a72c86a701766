"""Reading a backlog ahead in a second process, while this one plans, applies, sends and commits.

Parsing a message and reading it (``supportd.decide.reading``: the rules, the FAQ, the guard, the
language, the customer's own words) need no state: measured on a 3,000-mail backlog they were
about half of the main thread's time. For a pass with more than one batch, the pipeline hands the
next batch's bytes to a read-ahead process before it handles the current batch, and takes the
readings back when it gets there (``Pipeline._handle_batch``). The process never sees the ledger,
IMAP or SMTP: it gets bytes and sends back ``Read`` values; everything with an effect stays in the
main process, in UID order, after each message's claim is committed.

Failures lose nothing, they only cost time. A message the process could not read (an exception),
every message of a process that died or went silent, and everything after that in the pass are
read again in the main process, by the same code: there an exception counts against the message
and a crash marks it for a lone retry, as for any message (see ``supportd.service.pipeline``).
A message that kills the process every time thus ends up read alone, in the main process, and is
quarantined after ``limits.max_attempts``. Within the process each message has the same time limit
(``limits.decision_seconds``, ``supportd.decide.budget``: it runs in that process's main thread,
where the timer works); a message over it is set aside as it would be here.

Started with ``spawn``, deliberately: the main process has threads (the Sent copier's IMAP
connection, the SMTP senders), and a ``fork`` would copy whatever lock one of them held at that
instant (logging's, the import lock, a TLS object's) into a child that could then hang; a spawned
process starts clean and is this process's own child, so ``wait4`` counts its CPU and it dies with
the pass. The price is a fresh interpreter: measured about 0.15 s of the second core's CPU (the
interpreter and the imports; the rules' patterns are compiled as they are first used, see
``_LazyPattern``), while the main process handles the first batch itself. One
process pool per pass also means a reload of the rules (SIGHUP, an edited file) reaches the next
pass's readers without any message between the processes.
"""

from __future__ import annotations

import copyreg
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.reduction
import os
import pickle
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from supportd.decide.budget import DecisionTimeout, decision_budget
from supportd.decide.reading import Reader, Reading, read_message
from supportd.intake.message import Inbound, parse
from supportd.service import faults

log = logging.getLogger(__name__)

# Messages a task. Each task wakes two threads of the main process (the pool's manager and the queue's
# feeder) and each answer one more, which took the GIL from the main thread: measured on 3,000 mails in
# turns (bench/backlog.py, 9 pairs), 25 a task against 5 made the main process's CPU 7-15% smaller and
# the backlog 11% faster (median 298 against 268 messages/s); 50 (a whole batch) was no better.
CHUNK = 25
START_SECONDS = 60.0  # allowed for a process to start (interpreter, imports, rules) on a busy machine
SILENCE_MARGIN_SECONDS = 5.0  # on top of each message's time limit before a silent process is stopped


@dataclass(frozen=True)
class Read:
    """One message parsed and read ahead."""

    msg: Inbound  # as parsed (``reading.msg`` is without our text)
    reading: Reading
    seconds: float  # how long reading took: the plan gets what is left of the time limit


@dataclass(frozen=True)
class TimedOut:
    """Parsing or reading took longer than ``limits.decision_seconds``."""

    seconds: float


Outcome = Read | TimedOut


def processes_for(wanted: int) -> int:
    """Read-ahead processes to use: ``limits.read_ahead_processes``, and never every core.

    On one core a second process only takes turns with the main one, and the servers need time too.
    """
    return max(0, min(wanted, (os.cpu_count() or 1) - 1))


def read_mail(reader: Reader, raw: bytes, seconds: float) -> Read:
    """Parse and read one message, each step within ``seconds`` (raises ``DecisionTimeout``)."""
    with decision_budget(seconds):
        msg = parse(raw)
    faults.point("reading", msg.subject)
    started = time.perf_counter()
    with decision_budget(seconds):
        reading = read_message(reader, msg)
    return Read(msg, reading, time.perf_counter() - started)


# ---------------------------------------------------------------- in the read-ahead process

_reader: Reader | None = None


def _start(reader: Reader | _ReaderFile) -> None:
    """The process's set-up: the rules and replies of this pass.

    Ctrl-C and systemd's SIGTERM (sent to every process of the service) are the main process's to
    handle: it stops between batches and then ends this one, which ends with it in any case.
    """
    global _reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()
    assert isinstance(reader, Reader)  # a _ReaderFile arrives as the Reader it holds (see its __reduce__)
    _reader = reader


def _end_with(parent_sentinel: int) -> None:
    """End this process as soon as the main one has ended (killed, crashed): nothing is left for it to do.

    Otherwise it would wait for work for ever: it holds both ends of its own task queue, so it never
    sees the end of it; and it would keep the main process's stdout and stderr open.
    """
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def _read_chunk(raws: list[tuple[int, bytes]], seconds: float) -> list[tuple[int, Outcome | None]]:
    """Read each message; None for one that failed: the main process reads it again and counts it."""
    assert _reader is not None
    outcomes: list[tuple[int, Outcome | None]] = []
    for uid, raw in raws:
        try:
            outcomes.append((uid, read_mail(_reader, raw, seconds)))
        except DecisionTimeout:
            outcomes.append((uid, TimedOut(seconds)))
        except Exception:  # reported where it counts: in the main process, reading it again
            outcomes.append((uid, None))
    return outcomes


# ---------------------------------------------------------------- in the main process


class _ReaderFile:
    """The pickled rules and replies in a file without a name, handed to each process as a descriptor.

    Not with the process's start-up data: Python writes that into a pipe of 64 KB before the process
    reads it, and a process that died while starting left a larger write (the rules are ~150 KB)
    blocked for ever (3.11). Not a named file either: a supportd killed mid-pass would leave it.
    """

    def __init__(self, reader: Reader) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - open for the whole pass, closed by close()
        pickler = pickle.Pickler(self.file, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = {**copyreg.dispatch_table, re.Pattern: _compiled_when_used}
        pickler.dump(reader)
        self.file.flush()
        self.size = self.file.tell()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled only while a process is being spawned: the descriptor goes with it."""
        return _load_reader, (multiprocessing.reduction.DupFd(self.file.fileno()), self.size)

    def close(self) -> None:
        self.file.close()


def _load_reader(descriptor: Any, size: int) -> Reader:
    """In the new process: the reader from the file handed over (read from its start, whatever the offset)."""
    fd = descriptor.detach()
    try:
        data = bytearray()
        while len(data) < size:
            chunk = os.pread(fd, size - len(data), len(data))
            if not chunk:
                raise EOFError("the rules' file ended early")
            data += chunk
    finally:
        os.close(fd)
    reader: Reader = pickle.loads(data)
    return reader


def _compiled_when_used(pattern: re.Pattern[str]) -> tuple[Any, ...]:
    """How the reader's patterns are pickled for a read-ahead process (see ``_LazyPattern``)."""
    return _LazyPattern, (pattern.pattern, pattern.flags)


class _LazyPattern:
    """A pattern of the rules, the FAQ or the word lists in a read-ahead process: compiled at its first use.

    Compiling all ~170 of them again was most of loading the rules there (measured: 60 ms of the
    ~200 ms of CPU the process took to start), and the prefilter lets only a few of the rules'
    patterns run on a message at all (9 of the 167 over the backlog benchmark's mail). The main
    process compiled and checked every one of them at load; here each is compiled from the same text
    and flags, so it finds the same matches. One sent back (in a reading's FAQ entry) arrives as a
    compiled pattern, as it did before.
    """

    def __init__(self, pattern: str, flags: int) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        """``search``, ``finditer``...: the compiled pattern's (asked only for what the instance lacks).

        Kept on the instance, so the next ``search`` is found there without this call (a dozen a message).
        """
        if name.startswith("_"):  # e.g. _compiled while pickle builds the object: not a pattern method
            raise AttributeError(name)
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        found = getattr(self._compiled, name)
        setattr(self, name, found)
        return found

    def __reduce__(self) -> tuple[Any, ...]:
        return re.compile, (self.pattern, self.flags)

    def __eq__(self, other: object) -> bool:  # as compiled patterns compare: by text and flags
        if isinstance(other, (_LazyPattern, re.Pattern)):
            return (self.pattern, self.flags) == (other.pattern, other.flags)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.pattern, self.flags))


class ReadAhead:
    """The read-ahead processes of one pass, and the messages handed to them, by UID."""

    def __init__(self, reader: Reader, processes: int, seconds: float) -> None:
        self.seconds = seconds
        self.reader_file = _ReaderFile(reader)
        self.pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
            initargs=(self.reader_file,))
        self.handed: dict[int, Future[list[tuple[int, Outcome | None]]]] = {}
        self.sizes: dict[Future[Any], int] = {}
        self.started = False  # a first answer came back (until then the process may still be starting)
        self.read = 0

    @property
    def working(self) -> bool:
        """False once the process died, hung or could not start: the rest of the pass is read here."""
        return self.pool is not None

    def hand(self, raws: dict[int, bytes]) -> None:
        """Give these messages' bytes to the process(es), a few at a time, in UID order."""
        if self.pool is None:
            return
        ordered = sorted(raws.items())
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            try:
                future = self.pool.submit(_read_chunk, chunk, self.seconds)
            except BrokenProcessPool:
                self._died()
                return
            except Exception as exc:  # e.g. no process could be started: this pass reads the rest itself
                log.warning("the read-ahead process could not be given work (%s); this pass reads the rest "
                            "itself", exc)
                self.close(kill=True)
                return
            self.sizes[future] = len(chunk)
            self.handed.update((uid, future) for uid, _ in chunk)

    def take(self, uids: Iterable[int]) -> dict[int, Outcome]:
        """What came back for these messages; the ones missing are read in this process."""
        wanted = set(uids)
        futures = dict.fromkeys(self.handed.pop(uid) for uid in sorted(wanted) if uid in self.handed)
        found: dict[int, Outcome] = {}
        for future in futures:
            for uid, outcome in self._outcomes(future):
                if outcome is not None and uid in wanted:
                    found[uid] = outcome
        self.read += len(found)
        return found

    def _outcomes(self, future: Future[list[tuple[int, Outcome | None]]]) -> list[tuple[int, Outcome | None]]:
        size = self.sizes.pop(future, 0)
        if self.pool is None:
            return []
        # Each message may take its time limit twice (parsing, then reading) in a process that works in order.
        allowed = size * 2 * self.seconds + (SILENCE_MARGIN_SECONDS if self.started else START_SECONDS)
        try:
            outcomes = future.result(timeout=allowed)
        except FutureTimeout:
            log.warning("the read-ahead process sent nothing for %.0f s: stopped; this pass reads the rest "
                        "itself", allowed)
            self.close(kill=True)
            return []
        except BrokenProcessPool:
            self._died()
            return []
        except Exception:  # these messages are read here, where their failures count
            log.exception("the read-ahead process could not read %d messages; they are read here", size)
            return []
        self.started = True
        return outcomes

    def _died(self) -> None:
        log.warning("the read-ahead process died; this pass reads the rest itself")
        self.close()

    def close(self, kill: bool = False) -> None:
        """Stop the process(es) and wait for them (a process that was killed or died included)."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if kill or any(not future.done() for future in self.handed.values()):
            # Nothing it does has an effect: stopping it halfway loses nothing (its messages are read here).
            processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
            for process in list(processes.values()):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        self.reader_file.close()
        self.handed.clear()
        self.sizes.clear()
