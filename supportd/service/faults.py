"""Crash points, for the fault-injection tests: kill the process at a chosen step, reproducibly.

The processing protocol promises that a kill at any moment loses nothing and sends nothing twice.
Killing a process after a random delay tests that only by luck; these named points, placed
between every two side effects (commit, send, copy, mark), let a test kill supportd exactly
there, and a seed chooses where, so a failing trial can be run again.

``SUPPORTD_CRASH_AT`` holds comma-separated entries:

* ``NAME@N``: SIGKILL on the N-th time the point NAME is reached;
* ``*@N``: SIGKILL on the N-th point reached, whichever it is;
* ``NAME~TEXT``: SIGKILL whenever NAME is reached for something whose detail contains TEXT
  (a message that crashes supportd every time, to test quarantine);
* ``NAME%TEXT``: SIGSTOP instead: the process hangs there, alive and silent (a read-ahead
  process stuck on a message, to test that supportd stops waiting for it).

Unset, as in production, ``point`` costs one truth test.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SUPPORTD_CRASH_AT"


def _read_plan(text: str) -> list[tuple[str, str, str]]:
    entries = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        if "~" in entry or "%" in entry:
            how = "~" if "~" in entry else "%"
            name, _, detail = entry.partition(how)
            entries.append((name, how, detail))
        elif "@" in entry:
            name, _, count = entry.partition("@")
            entries.append((name, "@", count))
    return entries


_plan = _read_plan(os.environ.get(ENV, ""))
_hits: Counter[str] = Counter()


def point(name: str, detail: str = "") -> None:
    """A place where supportd may be killed in a fault-injection test."""
    if not _plan:
        return
    _hits[name] += 1
    _hits["*"] += 1
    for wanted, how, value in _plan:
        if how == "@" and wanted in (name, "*") and _hits[wanted] == int(value):
            _die()
        if how == "~" and wanted == name and value in detail:
            _die()
        if how == "%" and wanted == name and value in detail:
            os.kill(os.getpid(), signal.SIGSTOP)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
