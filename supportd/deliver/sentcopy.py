"""Sent copies appended on a second IMAP connection while the next batch is being decided.

Appending a batch's replies to the Sent folder is waiting on the IMAP server (MULTIAPPEND of 50
replies: 5.0 s of a 40 s profiled 3,000-message pass, 60 appends), and deciding the next batch is
computing: the two can overlap. ``SentCopier`` runs one MULTIAPPEND at a time in a worker thread
with its own connection (the main connection keeps its selected folder and its IDLE); the thread
touches nothing but that connection, so the ledger stays in the main thread.

The protocol is unchanged: a reply is marked ``copied`` only once the server answered the
APPEND (``wait`` returns its id), and its message is ``done`` only after that. A crash meanwhile
leaves replies ``sent`` but not ``copied``, which a restart already resolves by looking in Sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from supportd.base.config import ImapConfig
from supportd.intake.inbox import Landed, Mailbox

log = logging.getLogger(__name__)


class SentCopier:
    """At most one MULTIAPPEND in flight, on a connection of its own (opened on first use)."""

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.mailbox: Mailbox | None = None
        self.thread: threading.Thread | None = None
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self.landed: Landed = frozenset()  # where this pass's copies landed (for the scan of Sent)

    @property
    def busy(self) -> bool:
        return self.thread is not None

    def start(self, ids: Sequence[str], raws: Sequence[bytes]) -> None:
        """Begin appending ``raws`` (the replies ``ids``) to the Sent folder."""
        if self.thread is not None:
            raise RuntimeError("a Sent copy is already in flight")
        self.ids, self.error = list(ids), None
        self.thread = threading.Thread(target=self._append, args=(list(raws),), name="sent-copy", daemon=True)
        self.thread.start()

    def _append(self, raws: list[bytes]) -> None:
        try:
            if self.mailbox is None:
                mailbox = Mailbox(self.config)
                mailbox.connect()
                self.mailbox = mailbox
            self.landed |= self.mailbox.append_sent(raws)
        except BaseException as exc:  # handed to the main thread by wait()
            self.error = exc
            self._disconnect()

    def wait(self) -> list[str]:
        """The ids whose copies the server took (none when nothing was in flight); raises the append's error."""
        if self.thread is None:
            return []
        self.thread.join()
        self.thread = None
        ids, self.ids = self.ids, []
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return ids

    def settle(self) -> list[str]:
        """``wait`` for a pass that is ending with an error of its own: the copies that did land, or none."""
        try:
            return self.wait()
        except Exception as exc:  # the pass's own error is the one to report
            log.warning("the Sent copy in flight failed too (%s); a later pass copies those replies", exc)
            return []

    def take_landed(self) -> Landed:
        """Where the copies appended so far landed; forgotten here once taken."""
        landed, self.landed = self.landed, frozenset()
        return landed

    def close(self) -> None:
        self.settle()
        self._disconnect()

    def _disconnect(self) -> None:
        if self.mailbox is not None:
            self.mailbox.close()
            self.mailbox = None
