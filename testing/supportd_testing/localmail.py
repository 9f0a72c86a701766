"""Real mail servers on loopback: a throw-away Dovecot (IMAP) and an aiosmtpd sink (SMTP).

Why this exists: supportd talks to real IMAP and SMTP servers, and fakes hide exactly the
behaviour that matters (IDLE timing, UIDs, flags, exact message bytes, reconnects). So the
demo, the tests and the benchmarks all run against a real Dovecot and a real SMTP server on
127.0.0.1, with every file (config, sockets, mail, logs, certificate) under one temp folder.

Traps handled here (measured, see /work/shared/library-notes.md):

- Dovecot's unix sockets live in ``base_dir``; ``sun_path`` holds ~108 bytes, so ``root``
  must be short (``tempfile.mkdtemp(prefix="sd-", dir="/tmp")``, not pytest's ``tmp_path``).
- Mail processes refuse uid 0 ("Logged in, but initialization failed"): as root the mail
  user is ``nobody``, which must be able to reach the mail folder.
- Dovecot's processes keep inherited stdout/stderr: they go to a log file, or a caller that
  captures output hangs.
- Stopping only the master leaves logged-in ``imap`` processes behind for seconds: the whole
  process group gets SIGTERM (then SIGKILL), and we check that the group is empty.
- Failed logins cost 2 s and an anvil penalty by default: both are switched off. A failure
  is still answered on Dovecot's compiled-in 500 ms check tick (0-0.5 s after the LOGIN).
- After SIGTERM the children die in ~10 ms, but the master polls for them and holds the
  listening ports for ~0.1 s, or ~1 s in a few percent of stops: stop() waits for it.
- imaplib (under imapclient) turns bare LF and bare CR into CRLF in APPEND: test mail that
  must come back byte for byte has to use CRLF.
- IDLE notifications arrive ~0.5 s after a change (Dovecot's compiled-in delay): left as is.
- Free ports are found by binding 127.0.0.1:0 and closing the socket; another process could
  take the port before the server binds it. That race is accepted: it is rare on a test box.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import email.policy
import grp
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from imapclient import IMAPClient

log = logging.getLogger(__name__)


class _QuietDisconnects(logging.Filter):
    """aiosmtpd logs a traceback ("SMTP session exception") whenever a client hangs up without QUIT,
    which supportd does on purpose after a failed step; not a failure, so not shown. Others stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        benign = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)
        return not ("SMTP session exception" in record.getMessage() and isinstance(error, benign))


logging.getLogger("mail.log").addFilter(_QuietDisconnects())

LOOPBACK = "127.0.0.1"
DOVECOT_PATHS = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
IMAP_TIMEOUT = 10.0
# Longest socket Dovecot 2.3 creates below base_dir is "/token-login/imap-urlauth" (measured);
# this name adds a margin. sun_path is 108 bytes including the NUL.
_SUN_PATH_MAX = 107
_LONGEST_SOCKET_NAME = len("/token-login/imap-urlauth-worker")


FINISH_GRACE_SECONDS = 2.0  # how long the test SMTP server finishes a message after the client left

class LocalMailError(Exception):
    """A local mail server could not be installed, started, stopped or used."""


@dataclass
class MailUser:
    """One IMAP account: the login is the address."""

    address: str
    password: str


DEFAULT_USER = MailUser("test@example.com", "secret")


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free a moment ago (bind to port 0, close; racy by nature)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return ``count`` distinct free ports (all sockets are held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


# --------------------------------------------------------------------------------------------
# Dovecot binary
# --------------------------------------------------------------------------------------------


def _find_dovecot() -> Path | None:
    found = shutil.which("dovecot")
    candidates = ([found] if found else []) + list(DOVECOT_PATHS)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def dovecot_available() -> bool:
    """True when a Dovecot binary is installed (it is not started or checked further)."""
    return _find_dovecot() is not None


def ensure_dovecot() -> Path:
    """The Dovecot binary; it is installed by ``scripts/setup.sh`` (./demo.sh, ./test.sh), never from here."""
    binary = _find_dovecot()
    if binary is None:
        raise LocalMailError("Dovecot is not installed; run ./test.sh or ./demo.sh (they install it), "
                             "or: sudo apt-get install -y dovecot-imapd")
    return binary


# --------------------------------------------------------------------------------------------
# Process groups
# --------------------------------------------------------------------------------------------


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (PID 1 may never reap them)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        process.poll()  # reap the master, our child, so it does not linger as a zombie
        if not live_group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


# --------------------------------------------------------------------------------------------
# Dovecot
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MailOwner:
    name: str
    uid: int
    gid: int
    group: str


def _mail_owner() -> _MailOwner:
    """Dovecot refuses uid 0 for mail processes: use ``nobody`` when we are root."""
    entry = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return _MailOwner(entry.pw_name, entry.pw_uid, entry.pw_gid, grp.getgrgid(entry.pw_gid).gr_name)


def _read_greeting(host: str, port: int, timeout: float) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        return sock.recv(1024)


def _make_certificate(cert: Path, key: Path) -> None:
    """Self-signed certificate for 127.0.0.1 and localhost (it is its own CA: ``ca_file``)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LocalMailError("openssl is needed for tls=True; run: apt-get install -y openssl")
    extensions = (
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "basicConstraints=critical,CA:TRUE",
        "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        "extendedKeyUsage=serverAuth",
    )
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650"]
    command += ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)]
    for extension in extensions:
        command += ["-addext", extension]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise LocalMailError(f"openssl could not make a test certificate:\n{result.stderr}")
    key.chmod(0o600)
    cert.chmod(0o644)


_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class _LocalServer:
    """What both local servers share: restart on the same port ("down, then up"), and ``with``."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop and start again on the same port(s), with the same mail."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Dovecot(_LocalServer):
    """A throw-away Dovecot IMAP server on 127.0.0.1."""

    host = LOOPBACK

    def __init__(
        self,
        root: Path | str,
        users: Iterable[MailUser] = (DEFAULT_USER,),
        port: int = 0,
        tls: bool = False,
    ) -> None:
        self.root = Path(root).absolute()
        self.users: dict[str, MailUser] = {user.address: user for user in users}
        self.port = port  # 0 until the first start() picks one; kept across restarts
        self.tls = tls
        self.tls_port: int | None = None
        self.ca_file: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None
        self._binary: Path | None = None

    # -- paths ----------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "dovecot.log"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def _run_dir(self) -> Path:
        return self.root / "run"

    @property
    def _users_file(self) -> Path:
        return self.root / "users"

    @property
    def _startup_log(self) -> Path:
        return self.root / "log" / "startup.log"

    # -- state ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def pgid(self) -> int | None:
        """Process group of the last started master (kept after stop() for checks)."""
        return self._pgid

    def read_log(self) -> str:
        """Dovecot's own log plus what the master printed at start-up."""
        parts = []
        for path in (self._startup_log, self.log_file):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Write the config under ``root``, start Dovecot and wait for its greeting."""
        if self.running:
            raise LocalMailError(f"Dovecot in {self.root} is already running")
        self._binary = self._binary or ensure_dovecot()
        self._check_root()
        self._prepare_folders()
        self._choose_ports()
        if self.tls:
            self._ensure_certificate()
        self._write_users_file()
        self.config_file.write_text(self._config())
        self._launch()
        try:
            self._wait_until_ready()
        except LocalMailError:
            self.stop()
            raise
        _running_servers.add(self)

    def stop(self) -> None:
        """SIGTERM the master's process group, then SIGKILL; bounded; no process left behind."""
        process, pgid = self._process, self._pgid
        if process is None or pgid is None:
            return
        _signal_group(pgid, signal.SIGTERM)
        # Children die in ~10 ms; the master polls for them and exits after ~0.1 s or
        # ~1 s in a few percent of stops. Its listening sockets close only then.
        if not _wait_group_gone(pgid, process, STOP_TIMEOUT):
            _signal_group(pgid, signal.SIGKILL)
            if not _wait_group_gone(pgid, process, 2.0):
                raise LocalMailError(f"Dovecot process group {pgid} survived SIGKILL")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
        self._process = None
        _running_servers.discard(self)
        (self._run_dir / "master.pid").unlink(missing_ok=True)

    # -- start-up steps ---------------------------------------------------------------------

    def _check_root(self) -> None:
        longest = len(str(self._run_dir)) + _LONGEST_SOCKET_NAME
        if longest > _SUN_PATH_MAX:
            raise LocalMailError(
                f"folder {self.root} is too long for Dovecot's unix sockets "
                f"({longest} > {_SUN_PATH_MAX} bytes); use a shorter one, e.g. "
                f'tempfile.mkdtemp(prefix="sd-", dir="/tmp")'
            )
        if os.geteuid() == 0:
            self._check_reachable_by_others()

    def _check_reachable_by_others(self) -> None:
        """As root, mail is handled as ``nobody``: every parent folder must be searchable."""
        for parent in self.root.parents:
            if parent.exists() and not parent.stat().st_mode & 0o001:
                raise LocalMailError(
                    f"{parent} is not searchable by other users, so Dovecot's mail user "
                    f"'nobody' cannot reach {self.mail_dir}; use a folder like "
                    f'tempfile.mkdtemp(prefix="sd-", dir="/tmp")'
                )

    def _prepare_folders(self) -> None:
        for folder in (self.root, self._run_dir, self.root / "state", self.root / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        self.mail_dir.mkdir(exist_ok=True)
        self.root.chmod(0o755)  # mkdtemp makes 0700; the mail user must get through
        if os.geteuid() == 0:
            owner = _mail_owner()
            os.chown(self.mail_dir, owner.uid, owner.gid)

    def _choose_ports(self) -> None:
        if self.port == 0:
            self.port = free_port()
        if self.tls and self.tls_port is None:
            self.tls_port = next(p for p in free_ports(2) if p != self.port)

    def _ensure_certificate(self) -> None:
        cert, key = self.root / "tls-cert.pem", self.root / "tls-key.pem"
        if not (cert.exists() and key.exists()):
            _make_certificate(cert, key)
        self.ca_file = cert

    def _write_users_file(self) -> None:
        """passwd-file, replaced atomically: Dovecot re-reads it when it changes."""
        lines = "".join(f"{u.address}:{{PLAIN}}{u.password}\n" for u in self.users.values())
        temporary = self._users_file.with_suffix(".tmp")
        temporary.write_text(lines)
        temporary.chmod(0o644)
        temporary.replace(self._users_file)

    def _config(self) -> str:
        owner = _mail_owner()
        return _dovecot_config(
            root=self.root,
            port=self.port,
            tls_port=self.tls_port if self.tls else None,
            cert=self.ca_file if self.tls else None,
            owner=owner,
            rootless=os.geteuid() != 0,
        )

    def _launch(self) -> None:
        assert self._binary is not None
        command = [str(self._binary), "-F", "-c", str(self.config_file)]
        with self._startup_log.open("wb") as output:
            # A new session: the master's pid is the group id of every Dovecot process.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._pgid = self._process.pid

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalMailError(
                    f"Dovecot exited at start-up (code {self._process.returncode}); "
                    f"log:\n{self.read_log()}"
                )
            with contextlib.suppress(OSError):
                if _read_greeting(self.host, self.port, timeout=1.0).startswith(b"* OK"):
                    return
            time.sleep(0.005)
        raise LocalMailError(
            f"Dovecot sent no greeting on {self.host}:{self.port} within {START_TIMEOUT} s; "
            f"log:\n{self.read_log()}"
        )

    # -- users and mail --------------------------------------------------------------------

    def add_user(self, *users: MailUser) -> None:
        """Add (or change) accounts; works while running, and returns once the last one can log in.

        Dovecot re-reads its passwd-file when it changes, but checks at most once a second, so a
        login right after the change can still be refused; this waits (at most 3 s) until it is not.
        """
        for user in users:
            self.users[user.address] = user
        if self.root.is_dir():
            self._write_users_file()
        if self.running and users:
            self._wait_until_login_works(users[-1])

    def _wait_until_login_works(self, user: MailUser) -> None:
        deadline = time.monotonic() + 3.0
        while True:
            try:
                self.connect(user).logout()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def user(self, user: MailUser | str) -> MailUser:
        """The account for ``user`` (a MailUser or a known address)."""
        if isinstance(user, MailUser):
            return user
        try:
            return self.users[user]
        except KeyError:
            raise LocalMailError(
                f"unknown mail user {user!r}; known: {sorted(self.users)}"
            ) from None

    def connect(self, user: MailUser | str, timeout: float = IMAP_TIMEOUT) -> IMAPClient:
        """A logged-in IMAPClient on the plain loopback port (close it with ``logout()``)."""
        account = self.user(user)
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            client.login(account.address, account.password)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def append(
        self,
        user: MailUser | str,
        raw: bytes,
        folder: str = "INBOX",
        flags: Iterable[str | bytes] = (),
        arrived: dt.datetime | None = None,
    ) -> int:
        """APPEND ``raw`` to ``folder`` and return its UID (from UIDPLUS's APPENDUID).

        imaplib turns bare LF and bare CR into CRLF on the way (mail with LF line ends is
        stored with CRLF, as SMTP would deliver it). ``arrived`` sets the message's INTERNALDATE (default: now).
        """
        client = self.connect(user)
        try:
            response = client.append(folder, raw, flags=tuple(flags), msg_time=arrived)
        finally:
            with contextlib.suppress(Exception):
                client.logout()
        match = _APPENDUID.search(response if isinstance(response, bytes) else b"")
        if match is None:
            raise LocalMailError(f"APPEND answered without APPENDUID: {response!r}")
        return int(match.group(1))


def _dovecot_config(
    *,
    root: Path,
    port: int,
    tls_port: int | None,
    cert: Path | None,
    owner: _MailOwner,
    rootless: bool,
) -> str:
    """The whole dovecot.conf: maildir, one namespace, passwd-file users, no penalties."""
    if cert is not None:
        key = cert.with_name("tls-key.pem")
        ssl_block = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
    else:
        ssl_block = "ssl = no"
    tls_listener = (
        f"  inet_listener imaps {{\n    address = {LOOPBACK}\n    port = {tls_port}\n  }}\n"
        if tls_port is not None
        else "  inet_listener imaps {\n    port = 0\n  }\n"
    )
    no_chroot = "  chroot =\n" if rootless else ""
    rootless_block = (
        f"default_login_user = {owner.name}\n"
        f"default_internal_user = {owner.name}\n"
        f"default_internal_group = {owner.group}\n"
        if rootless
        else ""
    )
    return f"""\
# Written by supportd_testing.localmail for a throw-away test server; rewritten at every start.
protocols = imap
listen = {LOOPBACK}
base_dir = {root}/run
state_dir = {root}/state
instance_name = supportd-localmail-{port}
log_path = {root}/log/dovecot.log
info_log_path = {root}/log/dovecot.log
{ssl_block}
disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests log in with wrong passwords on purpose: no 2 s delay per failure.
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Archive {{
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={owner.uid} gid={owner.gid} home={root}/mail/%u
}}
{rootless_block}service anvil {{
{no_chroot}  # No auth penalty: otherwise logins after a failure wait seconds.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{no_chroot}  inet_listener imap {{
    address = {LOOPBACK}
    port = {port}
  }}
{tls_listener}}}
"""


# Servers still running when the interpreter exits are stopped (a crashed test run must not
# leave Dovecot processes behind).
_running_servers: set[Dovecot] = set()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_running_servers):
        with contextlib.suppress(Exception):
            server.stop()


# --------------------------------------------------------------------------------------------
# SMTP sink
# --------------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    """One message accepted by the SmtpSink, exactly as it came in."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    at_monotonic: float = field(default_factory=time.monotonic)
    at_wall: float = field(default_factory=time.time)

    def message(self) -> EmailMessage:
        """The message parsed with ``email.policy.default``."""
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


Stage = Literal["RCPT", "DATA"]
Deliver = Callable[[ReceivedMail], None]


def _default_reply_text(code: int) -> str:
    if code < 500:
        return "4.3.0 Temporary failure (SmtpSink.fail_next)"
    return "5.7.1 Rejected (SmtpSink.fail_next)"


class _SinkHandler:
    """aiosmtpd handler: accept any recipient, answer planned failures, keep every message."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.sink._count_attempt(address)
        if refusal is not None:
            return refusal
        failure = self.sink._take_failure("RCPT")
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        failure = self.sink._take_failure("DATA")
        if failure is not None:
            return failure
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        mail = ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), raw)
        # Deliver before answering 250: once the client's send() returns, the mail is there.
        # Like a real MTA, the message is ours once its final dot arrived: delivery and record run in
        # the executor, which finishes even when the client disconnects meanwhile (aiosmtpd then
        # cancels this handler; recording after an await here would lose the message).
        await asyncio.get_running_loop().run_in_executor(None, self.sink._accept, mail)
        return "250 OK: queued"


class _FinishingSMTP(SMTP):
    """aiosmtpd's SMTP server, but one that stores a message whose final dot arrived, like a real MTA.

    aiosmtpd cancels its handler the moment the client's connection ends, so a complete message
    whose final '.' came in the same read as the client's FIN is dropped (measured: about one kill
    in five right after supportd wrote the dots). Postfix and its kind store it: the transaction
    is complete at the dot. supportd's processing protocol depends on exactly that, so the test
    server must behave that way too. Here the handler gets a moment to finish what arrived.
    """

    async def _handle_client(self) -> None:
        """Refuse a connection over the sink's ``max_connections`` at the greeting, as a provider does."""
        sink = self.event_handler.sink
        if not sink._open_connection():
            await self.push("421 4.7.0 Too many connections from your address, try again later")
            assert self.transport is not None
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            sink._close_connection()

    def eof_received(self) -> bool | None:
        keep_open = asyncio.StreamReaderProtocol.eof_received(self)
        if self.session is not None and self.session.ssl is not None:
            return False  # as aiosmtpd does: a TLS transport cannot stay half open
        return keep_open

    def connection_lost(self, error: Exception | None) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        asyncio.StreamReaderProtocol.connection_lost(self, error)
        handler = self._handler_coroutine
        if handler is not None:
            handler.add_done_callback(_ignore_outcome)  # the session ends with a read error, as expected
            asyncio.get_running_loop().call_later(FINISH_GRACE_SECONDS, handler.cancel)
        self.transport = None


def _ignore_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _SinkController(Controller):
    def factory(self) -> SMTP:
        if self.ssl_context is not None:  # TLS from the first byte: the finishing variant hangs the
            return SMTP(self.handler, **self.SMTP_kwargs)  # handshake; the crash tests run in plain text
        return _FinishingSMTP(self.handler, **self.SMTP_kwargs)


class SmtpSink(_LocalServer):
    """An aiosmtpd SMTP server on 127.0.0.1 that keeps every message it accepts."""

    host = LOOPBACK

    def __init__(
        self,
        port: int = 0,
        deliver: Deliver | None = None,
        auth: dict[str, str] | None = None,
        tls: Literal["none", "starttls", "implicit"] = "none",
        smtputf8: bool = True,
        max_connections: int | None = None,
    ) -> None:
        self.port = port  # 0 until the first start() picks one; kept across restarts
        # Connections taken at once; one more is refused with 421 at the greeting (plain text only)
        self.max_connections = max_connections
        self.open_connections = 0
        self.most_connections = 0  # the most open at once (taken, not refused)
        self.refused_connections = 0
        self.smtputf8 = smtputf8  # offers SMTPUTF8 (RFC 6531), as Postfix and Exim do
        self.deliver = deliver
        self.auth = auth  # login -> password; AUTH is then required (without TLS)
        self.tls = tls  # with TLS, a self-signed certificate that is its own CA: ca_file
        self.ca_file: Path | None = None
        self._key_file: Path | None = None
        self.messages: list[ReceivedMail] = []
        self.delivery_errors: list[BaseException] = []
        self._arrived = threading.Condition()
        self._failures: dict[Stage, deque[str]] = {"RCPT": deque(), "DATA": deque()}
        self._refusals: dict[str, str] = {}
        self._attempts: Counter[str] = Counter()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen on 127.0.0.1:port (a free port the first time if port is 0)."""
        if self.running:
            raise LocalMailError(f"SmtpSink on port {self.port} is already running")
        if self.port == 0:
            self.port = free_port()
        controller = _SinkController(
            _SinkHandler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="localhost",  # the default, getfqdn(), can wait on DNS
            ready_timeout=START_TIMEOUT,
            enable_SMTPUTF8=self.smtputf8,
            **self._auth_settings(),
            **self._tls_settings(),
        )
        try:
            controller.start()
        except Exception as error:
            raise LocalMailError(
                f"SmtpSink could not listen on port {self.port}: {error}"
            ) from error
        self._controller = controller

    def stop(self) -> None:
        """Close the listener and every open connection (bounded wait)."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        stopper = threading.Thread(target=controller.stop, daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT)
        if stopper.is_alive():
            raise LocalMailError(f"SmtpSink on port {self.port} did not stop in {STOP_TIMEOUT} s")


    def fail_next(self, code: int, message: str = "", times: int = 1, at: Stage = "DATA") -> None:
        """Answer the next ``times`` DATA (or RCPT) commands with ``code``, e.g. 451 or 550."""
        if not 400 <= code <= 599:
            raise ValueError(f"fail_next needs a 4xx or 5xx code, not {code}")
        reply = f"{code} {message or _default_reply_text(code)}"
        with self._arrived:
            self._failures[at].extend([reply] * times)

    def refuse(self, address: str, code: int, message: str = "") -> None:
        """Answer every RCPT for ``address`` with ``code`` until ``accept(address)``."""
        with self._arrived:
            self._refusals[address.lower()] = f"{code} {message or _default_reply_text(code)}"

    def accept(self, address: str) -> None:
        with self._arrived:
            self._refusals.pop(address.lower(), None)

    def rcpt_attempts(self, address: str) -> int:
        """How often a client asked to send to ``address`` (refused or not)."""
        with self._arrived:
            return self._attempts[address.lower()]

    def _open_connection(self) -> bool:
        with self._arrived:
            if self.max_connections is not None and self.open_connections >= self.max_connections:
                self.refused_connections += 1
                return False
            self.open_connections += 1
            self.most_connections = max(self.most_connections, self.open_connections)
            return True

    def _close_connection(self) -> None:
        with self._arrived:
            self.open_connections -= 1

    def _count_attempt(self, address: str) -> str | None:
        with self._arrived:
            self._attempts[address.lower()] += 1
            return self._refusals.get(address.lower())

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages arrived; return them all (a copy)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                subjects = [mail.message()["subject"] for mail in self.messages]
                raise TimeoutError(
                    f"expected {count} messages within {timeout} s, "
                    f"got {len(self.messages)}: {subjects}"
                )
            return list(self.messages)

    # -- called from the server thread ---------------------------------------------------

    def _take_failure(self, stage: Stage) -> str | None:
        with self._arrived:
            queue = self._failures[stage]
            return queue.popleft() if queue else None

    def _deliver_safely(self, mail: ReceivedMail) -> None:
        if self.deliver is None:
            return
        try:
            self.deliver(mail)
        except Exception as error:  # the message is still accepted
            log.exception("SmtpSink deliver callback failed for %s", mail.rcpt_tos)
            with self._arrived:
                self.delivery_errors.append(error)

    def _accept(self, mail: ReceivedMail) -> None:
        self._deliver_safely(mail)
        self._record(mail)

    def _record(self, mail: ReceivedMail) -> None:
        with self._arrived:
            self.messages.append(mail)
            self._arrived.notify_all()

    def _tls_settings(self) -> dict[str, Any]:
        """STARTTLS (``tls_context``) or TLS from the first byte (``ssl_context``), same certificate."""
        if self.tls == "none":
            return {}
        if self.ca_file is None or self._key_file is None:
            folder = Path(tempfile.mkdtemp(prefix="sd-smtp-tls-"))
            self.ca_file, self._key_file = folder / "cert.pem", folder / "key.pem"
            _make_certificate(self.ca_file, self._key_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, self._key_file)
        return {"tls_context": context} if self.tls == "starttls" else {"ssl_context": context}

    def _auth_settings(self) -> dict[str, Any]:
        if self.auth is None:
            return {}
        # AUTH without TLS is the point of a loopback test server: silence aiosmtpd's warning.
        warnings.filterwarnings(
            "ignore", message="Requiring AUTH while not requiring TLS", module="aiosmtpd"
        )
        return {
            "authenticator": self._authenticate,
            "auth_required": True,
            "auth_require_tls": False,
        }

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode(errors="replace")
        password = auth_data.password.decode(errors="replace")
        return AuthResult(success=self.auth.get(login) == password, handled=False)


def deliver_to_dovecot(
    dovecot: Dovecot, users: dict[str, MailUser] | None = None
) -> Callable[[ReceivedMail], None]:
    """A SmtpSink ``deliver`` callback: APPEND each mail to the INBOX of every known recipient.

    ``users`` maps addresses to accounts (default: the Dovecot's users at delivery time);
    recipients that are not known are ignored, addresses compare case-insensitively.
    """

    def deliver(mail: ReceivedMail) -> None:
        for user in _known_recipients(mail.rcpt_tos, dovecot.users if users is None else users):
            dovecot.append(user, mail.raw)

    return deliver


def _known_recipients(rcpt_tos: Iterable[str], users: dict[str, MailUser]) -> Iterator[MailUser]:
    by_address = {address.lower(): user for address, user in users.items()}
    seen: set[str] = set()
    for rcpt in rcpt_tos:
        user = by_address.get(rcpt.lower())
        if user is not None and user.address not in seen:
            seen.add(user.address)
            yield user


LOCAL_SUPPORT = "support@shop.example"
LOCAL_OWNER = "owner@shop.example"


def write_supportd_config(
    folder: Path,
    dovecot: Dovecot,
    sink: SmtpSink,
    user: MailUser,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """``folder/supportd.yaml`` for an example shop on these local servers (demo, tests, benchmarks).

    The repository's default rules and replies, state in ``folder/state``; each entry of
    ``sections`` adds to (or overrides keys of) that section.
    """
    from supportd.base.config import repository_defaults

    rules, replies = repository_defaults()
    (folder / "imap-password").write_text(user.password)
    settings: dict[str, dict[str, Any]] = {
        "shop": {"name": "Example Shop", "support_address": LOCAL_SUPPORT, "owner_address": LOCAL_OWNER,
                 "contact_footer": "Example Shop · +49 30 1234567 · https://shop.example"},
        "imap": {"host": LOOPBACK, "port": dovecot.port, "tls": "none", "user": user.address,
                 "password_file": "imap-password"},
        "smtp": {"host": LOOPBACK, "port": sink.port, "tls": "none", "timeout_seconds": 10},
        "paths": {"state": "state", "rules": str(rules), "replies": str(replies)},
    }
    for name, values in (sections or {}).items():
        settings.setdefault(name, {}).update(values)
    path = folder / "supportd.yaml"
    path.write_text(yaml.safe_dump(settings, allow_unicode=True, sort_keys=False))
    return path
