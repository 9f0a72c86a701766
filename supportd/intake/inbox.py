"""IMAP in: find what is new, fetch it without marking it read, mark it handled, wait for more.

Customer mail is never deleted: a handled message gets a keyword (or is moved, where the server
has MOVE; without MOVE supportd keeps the keyword rather than copy-and-expunge). Messages are
fetched with ``BODY.PEEK[]`` so the owner still sees them unread.

Waiting uses IDLE where the server offers it (renewed well before the 30 minutes after which a
server may drop it) and polling where not. imapclient does not raise when the server dies during
IDLE: ``idle_check`` returns BYE, or an empty list at once. Both are treated as a lost connection,
or a naive loop would spin (measured: 169,514 calls in 2 s).
"""

from __future__ import annotations

import datetime as dt
import imaplib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.imapclient import SENT as SENT_FLAG
from imapclient.response_parser import parse_fetch_response
from imapclient.response_types import SearchIds

from supportd.base.config import ImapConfig
from supportd.deliver.mailer import tls_context
from supportd.intake import fetched

log = logging.getLogger(__name__)
FETCH_CHUNK = 100
IDLE_SETTLE_SECONDS = 0.15  # longer than IDLE's blind start (see Mailbox.wait)
NEWS = (b"EXISTS", b"RECENT")
# What a reply in the Sent folder is read by: who, to whom, when, and which thread it answers.
SENT_HEADERS = "BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID IN-REPLY-TO REFERENCES)]"
# Where appended copies landed (RFC 4315 UIDPLUS): "[APPENDUID uidvalidity uid-set]".
APPENDUID = re.compile(rb"\[APPENDUID (\d{1,10}) ([0-9:,]{1,10000})\]")
Landed = frozenset[tuple[int, int]]  # (UIDVALIDITY, UID) of copies supportd appended to Sent

# What a lost or broken connection looks like, from imapclient, imaplib, ssl and the socket.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    IMAPClientError, imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError, socket.timeout, ssl.SSLError,
    EOFError,
)


class ConnectionLost(Exception):
    """The IMAP server went away; the daemon reconnects with backoff."""


class LoginRefused(ConnectionLost):
    """The IMAP server refused our login, or the password could not be read: the settings' fault.

    Retried like a lost connection (the password is read again at each try), but reported to the
    owner and in ``supportd status`` as what it is.
    """


RECONNECT_ERRORS: tuple[type[BaseException], ...] = (ConnectionLost, *CONNECTION_ERRORS)


@dataclass(frozen=True)
class Stored:
    """What the server tells about a message before it is read."""

    size: int
    arrived: dt.datetime | None  # INTERNALDATE, timezone-aware: when the server took the message in


class Mailbox:
    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.client: imapclient.IMAPClient | None = None
        self.uidvalidity = 0
        self.can_move = False
        self.can_idle = False
        self.sent_folder: str | None = None
        self.last_ok: float | None = None  # time.time() of the last exchange that worked
        self.login_error = ""  # why the last login was refused; "" once one works

    # ------------------------------------------------------------ connection

    def connect(self) -> None:
        server = self.config.server
        # Loading the system's certificates costs ~20 ms a connection: only where TLS is used
        context = tls_context(server.verify_certificate, str(server.ca_file) if server.ca_file else None) \
            if server.tls != "none" else None
        try:
            client = imapclient.IMAPClient(
                server.host, port=server.port, ssl=server.tls == "implicit", ssl_context=context,
                timeout=imapclient.SocketTimeout(connect=server.timeout_seconds, read=server.timeout_seconds),
            )
        except ssl.SSLCertVerificationError as exc:
            raise LoginRefused(_untrusted(server.host, exc)) from exc
        if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
            # imapclient sets imaplib's debug to 5 for that logger: imaplib then formats every line
            # it reads, and each message fetched twice (repr of the bytes), for a logger that drops them
            client._imap.debug = 0
        try:
            if server.tls == "starttls":
                try:
                    client.starttls(context)
                except ssl.SSLCertVerificationError as exc:
                    raise LoginRefused(_untrusted(server.host, exc)) from exc
            if server.user:
                client.login(server.user, _password(self.config))
            selected = client.select_folder(self.config.folder)
        except LoginError as exc:
            _quietly_close(client)
            self.login_error = f"login refused for {server.user}: {_text(exc)}"
            raise LoginRefused(self.login_error) from exc
        except BaseException:
            _quietly_close(client)
            raise
        client.normalise_times = False  # INTERNALDATE with its zone, not naive local time
        self.client = client
        self._unread_exists_reported()  # SELECT's counts: the first pass searches the folder anyway
        self.uidvalidity = int(selected[b"UIDVALIDITY"])
        self.can_move = client.has_capability("MOVE")
        self.can_idle = self.config.use_idle and client.has_capability("IDLE")
        self.sent_folder = None
        self.login_error = ""
        self.touch()

    def touch(self) -> None:
        """The server answered: remember when (for ``supportd status``)."""
        self.last_ok = time.time()

    def close(self) -> None:
        if self.client is not None:
            _quietly_close(self.client)
            self.client = None

    @property
    def connected(self) -> bool:
        return self.client is not None

    def _client(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise ConnectionLost("not connected")
        return self.client

    # ------------------------------------------------------------ reading

    def unhandled_uids(self, above: int = 0) -> list[int]:
        """UIDs above ``above`` without our handled or quarantine keyword, oldest first."""
        criteria: list[str | bytes] = ["UID", f"{above + 1}:*"] if above else ["ALL"]
        criteria += ["UNKEYWORD", self.config.handled_keyword, "UNKEYWORD", self.config.quarantine_keyword]
        found: SearchIds = self._client().search(criteria)
        return sorted(uid for uid in found if uid > above)  # 'n:*' also returns the last UID below n

    def stored(self, uids: Sequence[int]) -> dict[int, Stored]:
        """Size and arrival time of each message still there (one small FETCH per chunk)."""
        result: dict[int, Stored] = {}
        for chunk in _chunks(uids, FETCH_CHUNK * 10):
            for uid, data in self._fetch(chunk, b"(RFC822.SIZE INTERNALDATE)").items():
                arrived = data.get(b"INTERNALDATE")
                result[uid] = Stored(size=int(data.get(b"RFC822.SIZE", 0)),
                                     arrived=arrived if isinstance(arrived, dt.datetime) else None)
        return result

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw bytes of each message still there (one FETCH per chunk, nothing marked \\Seen)."""
        result: dict[int, bytes] = {}
        for chunk in _chunks(uids, FETCH_CHUNK):
            for uid, data in self._fetch(chunk, b"(BODY.PEEK[])").items():
                raw = data.get(b"BODY[]")
                if isinstance(raw, bytes):
                    result[uid] = raw
        return result

    def _fetch(self, uids: list[int], items: bytes) -> dict[int, dict[bytes, Any]]:
        """``client.fetch(uids, items)``, its answer read by ``fetched.parse`` (imapclient's own
        parser only where that declines): the same command, results, errors and time-outs.

        ``_raw_command_untagged`` is imapclient's path for SEARCH, SORT and THREAD: it sends
        ``UID FETCH``, waits for the tagged answer (imaplib raises on BAD and on a lost
        connection), raises IMAPClientError unless it is OK, and hands over imaplib's FETCH data.
        """
        client = self._client()
        data = client._raw_command_untagged(b"FETCH", [b",".join(b"%d" % uid for uid in uids), items])
        parsed = fetched.parse(data)
        if parsed is None:
            log.debug("FETCH answer read by imapclient: %.200r", data)
            parsed = parse_fetch_response(data, client.normalise_times, client.use_uid)
        return {uid: parsed[uid] for uid in uids if uid in parsed}

    # ------------------------------------------------------------ marking

    def mark_handled(self, uids: Sequence[int]) -> None:
        self._mark(uids, self.config.handled_keyword, self.config.move_handled_to)

    def mark_quarantined(self, uids: Sequence[int]) -> None:
        self._mark(uids, self.config.quarantine_keyword, self.config.quarantine_folder)

    def _mark(self, uids: Sequence[int], keyword: str, move_to: str | None) -> None:
        if not uids:
            return
        client = self._client()
        client.add_flags(list(uids), [keyword.encode()], silent=True)
        if move_to and self.can_move:
            self._ensure_folder(move_to)
            client.move(list(uids), move_to)

    def _ensure_folder(self, folder: str) -> None:
        client = self._client()
        if not client.folder_exists(folder):
            try:
                client.create_folder(folder)
            except IMAPClientError:
                if not client.folder_exists(folder):
                    raise

    # ------------------------------------------------------------ the Sent folder

    def _sent(self) -> str | None:
        if self.config.sent_folder is None:
            return None
        if self.sent_folder is None:
            client = self._client()
            special = client.find_special_folder(SENT_FLAG)
            name = self.config.sent_folder
            if not client.folder_exists(name) and special:
                name = special
            self._ensure_folder(name)
            self.sent_folder = name
        return self.sent_folder

    def append_sent(self, messages: Iterable[bytes]) -> Landed:
        """Keep a copy of each reply in the Sent folder, marked read, so the owner sees the thread.

        Returns where the copies landed when the server says (UIDPLUS), so that the scan of Sent
        need not fetch supportd's own copies back (3,000 header FETCHes after a 3,000-mail pass).
        """
        folder = self._sent()
        batch = list(messages)
        if folder is None or not batch:
            return frozenset()
        client = self._client()
        if len(batch) > 1 and client.has_capability("MULTIAPPEND"):
            answers = [client.multiappend(folder, [{"msg": m, "flags": [imapclient.SEEN]} for m in batch])]
        else:
            answers = [client.append(folder, message, flags=[imapclient.SEEN]) for message in batch]
        return frozenset(pair for answer in answers for pair in appended_uids(answer, len(batch)))

    def append_alert(self, message: bytes) -> None:
        """Put an alert for the owner into the watched folder itself (when SMTP refuses us), unread,
        with the handled keyword, so the owner sees it and supportd does not take it for a customer's."""
        try:
            self._client().append(self.config.folder, message, flags=[self.config.handled_keyword.encode()])
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"could not put the alert into {self.config.folder}: {exc}") from exc

    def sent_has(self, message_ids: Iterable[str], header: str = "Message-ID") -> set[str]:
        """Which of these header values have a copy in the Sent folder (after a crash or a recovery)."""
        folder = self._sent()
        wanted = list(message_ids)
        if folder is None or not wanted:
            return set()
        client = self._client()
        found = set()
        client.select_folder(folder, readonly=True)
        try:
            for value in wanted:
                if client.search(["HEADER", header, value]):
                    found.add(value)
        finally:
            client.select_folder(self.config.folder)
        return found

    def sent_since(self, uidvalidity: int, above: int, since: dt.date,
                   own: Landed = frozenset()) -> tuple[int, int, dict[int, bytes]]:
        """The headers of mail filed in the Sent folder after UID ``above`` (or, without a cursor for
        this UIDVALIDITY, since the day ``since``): (UIDVALIDITY, highest UID seen, headers by UID).
        ``own`` are supportd's own copies (from ``append_sent``): seen, but not fetched.

        The folder is only examined (read-only, ``BODY.PEEK``): nothing in it is changed. A STATUS
        first, so a pass with nothing new in Sent costs one command and no folder switch.
        """
        folder = self._sent()
        if folder is None:
            return 0, 0, {}
        client = self._client()
        status = client.folder_status(folder, [b"UIDVALIDITY", b"UIDNEXT"])
        current = int(status[b"UIDVALIDITY"])
        known = current == uidvalidity
        high = above if known else 0
        last = int(status[b"UIDNEXT"]) - 1
        if known and last <= high:
            return current, high, {}
        client.select_folder(folder, readonly=True)
        try:
            criteria: list[Any] = ["UID", f"{high + 1}:*"] if known else ["SINCE", since]
            uids = sorted(u for u in client.search(criteria) if u > high)
            headers: dict[int, bytes] = {}
            wanted = [u for u in uids if (current, u) not in own]
            for chunk in _chunks(wanted, FETCH_CHUNK):
                for uid, data in client.fetch(chunk, [SENT_HEADERS]).items():
                    raw = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), None)
                    if isinstance(raw, bytes):
                        headers[uid] = raw
        finally:
            client.select_folder(self.config.folder)
            self._unread_exists_reported()  # the re-selected inbox's counts are no news
        return current, max([last, high, *uids]), headers

    # ------------------------------------------------------------ waiting for news

    def wait(self, seconds: float, keep_waiting: Callable[[], bool], above: int = 0) -> bool:
        """Wait up to ``seconds`` for new mail; ``keep_waiting`` is asked about once a second.

        Returns True when mail arrived. Raises ConnectionLost when the connection died meanwhile.

        IDLE has a blind start, measured on Dovecot 2.3: of appends that completed within 35 ms
        after the IDLE command, about one in five was never announced (until Dovecot's keepalive,
        40 s later). Mail that arrives while supportd finishes a pass lands exactly there, so a
        first short IDLE is followed by one more sync before the long one.
        """
        if self._arrived_meanwhile(above):
            log.debug("new mail arrived during the pass")
            return True
        if not self.can_idle:
            return self._poll(seconds, keep_waiting)
        deadline = time.monotonic() + seconds
        if self._idle(min(IDLE_SETTLE_SECONDS, seconds), keep_waiting) or self._arrived_meanwhile(above):
            return True
        remaining = deadline - time.monotonic()
        return remaining > 0 and keep_waiting() and self._idle(remaining, keep_waiting)

    def _idle(self, seconds: float, keep_waiting: Callable[[], bool]) -> bool:
        """One IDLE command, for up to ``seconds``: True when the server announced new mail."""
        client = self._client()
        try:
            client.idle()
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"IDLE refused: {exc}") from exc
        news = False
        log.debug("waiting in IDLE for up to %.1f s", seconds)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and keep_waiting():
                asked = time.monotonic()
                responses = client.idle_check(timeout=min(1.0, max(0.05, deadline - asked)))
                if any(len(r) > 0 and r[0] == b"BYE" for r in responses):
                    raise ConnectionLost("the server said BYE during IDLE")
                if not responses and time.monotonic() - asked < 0.04:
                    raise ConnectionLost("the connection closed during IDLE")
                if responses:
                    log.debug("IDLE said %s", responses)
                if any(len(r) > 1 and r[1] in NEWS for r in responses):
                    news = True
                    break
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"IDLE failed: {exc}") from exc
        finally:
            try:
                client.idle_done()
            except CONNECTION_ERRORS as exc:
                raise ConnectionLost(f"ending IDLE failed: {exc}") from exc
        return news

    def _arrived_meanwhile(self, above: int) -> bool:
        """Did unhandled mail arrive above UID ``above`` since the last pass looked?

        Measured on Dovecot: a message appended after this session last synced and before IDLE
        starts is not announced in IDLE (only by Dovecot's 30 s fallback check). A command's
        results reflect the folder as the command started, while the EXISTS for mail that came in
        meanwhile arrives with its answer, where imapclient leaves it unread in imaplib's
        ``untagged_responses``. So: sync (NOOP), search, and count any EXISTS the answers carried.
        """
        client = self._client()
        try:
            _, responses = client.noop()
            if any(len(r) > 1 and r[1] in NEWS for r in responses):
                return True
            if self.unhandled_uids(above):
                return True
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"checking for new mail failed: {exc}") from exc
        return self._unread_exists_reported()

    def _unread_exists_reported(self) -> bool:
        """An EXISTS the server sent with some other command's answer, not yet looked at."""
        untagged = getattr(getattr(self._client(), "_imap", None), "untagged_responses", None)
        if not isinstance(untagged, dict):
            return False
        exists = untagged.pop("EXISTS", None)
        recent = untagged.pop("RECENT", None) or []
        return bool(exists) or any(value not in (b"0", "0") for value in recent)

    def _poll(self, seconds: float, keep_waiting: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + min(seconds, self.config.poll_seconds)
        while time.monotonic() < deadline and keep_waiting():
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        try:
            self._client().noop()
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"NOOP failed: {exc}") from exc
        return False


def _untrusted(host: str, exc: ssl.SSLCertVerificationError) -> str:
    return f"the certificate of {host} is not trusted ({exc.verify_message}); set imap.ca_file to the server's CA, " \
           "or fix the certificate"


def _password(config: ImapConfig) -> str:
    secret = config.server.password
    try:
        return secret.reveal() if secret else ""  # read again at each login: a fixed file counts
    except (OSError, RuntimeError) as exc:
        raise LoginRefused(f"cannot read the IMAP password ({exc})") from exc


def _text(exc: BaseException) -> str:
    """imapclient's LoginError carries the server's bytes: b'[AUTHENTICATIONFAILED] ...'."""
    text = str(exc)
    return text[2:-1] if text.startswith(("b'", 'b"')) else text


def appended_uids(answer: Any, most: int) -> Iterator[tuple[int, int]]:
    """(UIDVALIDITY, UID) pairs an APPEND answer names, at most ``most`` (a server's range is not trusted)."""
    found = APPENDUID.search(answer if isinstance(answer, bytes) else str(answer).encode())
    if found is None:
        return
    uidvalidity = int(found.group(1))
    for part in found.group(2).split(b","):
        first, _, last = part.partition(b":")
        if not first.isdigit() or (last and not last.isdigit()):
            return
        low, high = sorted((int(first), int(last or first)))
        for uid in range(low, min(high, low + most - 1) + 1):
            yield uidvalidity, uid
            most -= 1
        if most <= 0:
            return


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _quietly_close(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # closing a connection that may already be dead
        try:
            client.shutdown()
        except Exception:
            log.debug("IMAP connection closed uncleanly")
