"""A time limit per message decision: a message that takes too long is set aside, the queue goes on.

The patterns that read customer text are linear and the text they read is capped (see
``supportd.decide.rules.View`` and ``bench/hostile.py``), so no message should come near the limit. This
is the backstop for what those measures miss (an owner's own regular expression, a parser's
corner): Python's regular-expression engine checks for signals while it matches, so a SIGALRM
timer interrupts even a runaway pattern. The timer is used only in the main thread (where signal
handlers run); elsewhere the time is checked once the decision is made.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

REPEAT_SECONDS = 0.05
# signal.signal without its wrapper, which turns the numbers into enums and back: half of what a budget
# cost (9.0 -> 4.5 us; a message takes two). Same handlers in, same handler out, as plain values.
_set_handler: Callable[[int, Any], Any] = getattr(importlib.import_module("_signal"), "signal", signal.signal)


class DecisionTimeout(Exception):
    """The decision for one message took longer than ``limits.decision_seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"took longer than {seconds:g} s to decide (limits.decision_seconds)")
        self.seconds = seconds


@contextlib.contextmanager
def decision_budget(seconds: float) -> Iterator[None]:
    """Raise ``DecisionTimeout`` inside the block once ``seconds`` have passed."""
    started = time.monotonic()
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        if time.monotonic() - started > seconds:
            raise DecisionTimeout(seconds)
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise DecisionTimeout(seconds)

    previous = _set_handler(signal.SIGALRM, expired)
    # Re-armed every REPEAT_SECONDS after the limit: a raise that lands in a finalizer or a gc
    # callback is printed as "Exception ignored" and dropped by Python; the next one gets through.
    signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _set_handler(signal.SIGALRM, previous)
