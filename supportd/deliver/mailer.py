"""SMTP out: a few parallel connections, and a send that can be committed before it happens.

The ledger must never say "not sent" about a reply the server accepted (it would be sent twice), nor
"sent" about one it never got. SMTP gives no way to ask a server afterwards, so the commit point is
moved instead: each reply is *staged* (MAIL, RCPT, DATA and the whole body, all but the final
``.``), the caller commits "committing" to the ledger, and only then are the final dots written.
A server discards a transaction whose connection drops before the dot, so:

* a crash before the commit leaves the reply "queued", and the server discarded it: send again;
* a crash after the commit means the dot was the next thing written: the reply counts as sent.

The one gap left is the few microseconds between the ledger's rename and the write of the dot.
Staging on several connections at once lets one commit cover a whole round of replies (the
backlog target needs that; a serial send with a commit each gets about 50 messages a second).

aiosmtplib raises the same exception classes for 4xx and 5xx replies: temporary and permanent are
told apart by the reply code, never by the class.

The width adapts to the server: ``smtp.connections`` is the most opened at once. A server that
refuses one more while it holds the others (a 421 at the greeting, a reset, a time-out: providers
limit the connections a client may open) gets that many from then on, and the replies of the
refused connections go out at once over the others, not a minute later. The full width is tried
again after ``WIDTH_RETRY_SECONDS``.

A refused login (535), or a server that wants one (530), says nothing about the message: it is
``LOGIN``, never ``PERMANENT``, so the reply stays queued until the password is fixed. The password
is read again at every new connection, and a connection whose login failed is closed, so a fixed
password file is picked up by the next try without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiosmtplib

from supportd.base.config import SmtpConfig
from supportd.deliver.envelope import LOGIN as LOGIN
from supportd.deliver.envelope import LOGIN_CODES, classify_code
from supportd.deliver.envelope import PERMANENT as PERMANENT
from supportd.deliver.envelope import SENT as SENT
from supportd.deliver.envelope import TEMPORARY as TEMPORARY
from supportd.deliver.envelope import Envelope as Envelope
from supportd.deliver.envelope import Result as Result
from supportd.service import faults

log = logging.getLogger(__name__)
PUMP_STEPS = 4
WIDTH_RETRY_SECONDS = 900.0  # after the server refused a connection: when the full width is tried again
LINE_ENDINGS = re.compile(rb"\r\n|\n|\r")
LEADING_DOT = re.compile(rb"(?m)^\.")
# An address as aiosmtplib's quote_address leaves it, in angle brackets: a dot-atom local part and domain
# (RFC 5322 atext), nothing its parser would change (tests/deliver/test_mailer.py holds the two equal).
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                           r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


class LoginRefused(Exception):
    """The SMTP server refused our login, the password could not be read, or the server's certificate
    is not trusted: the settings' fault, never the message's. ``code`` is the server's, or 0."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code} {detail}".strip())
        self.code = code
        self.detail = detail


def _untrusted_certificate(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind a connection error (aiosmtplib wraps it for implicit TLS)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        if seen is None:
            return None
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True)
class Unopened:
    """A connection the server did not take (refused, closed at its greeting, silent); ``result`` is the
    reply's outcome when the server held no other connection either."""

    result: Result


def data_payload(raw: bytes) -> bytes:
    """The message as sent after DATA: CRLF line endings, leading dots doubled, no final dot.

    A composed reply has LF line endings and no line starting with a dot (quoted-printable leaves
    one only where the text has it): one ``replace``, the two regex passes only where they change
    something (16 -> 2 us a reply).
    """
    body = LINE_ENDINGS.sub(b"\r\n", raw) if b"\r" in raw else raw.replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return LEADING_DOT.sub(b"..", body) if body.startswith(b".") or b"\n." in body else body


def tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Mailer:
    """Sends envelopes over up to ``connections`` SMTP connections, reusing them between rounds."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.clients: list[aiosmtplib.SMTP] = []
        self.last_ok: float | None = None  # time.time() of the last reply the server took
        self.login_error = ""  # why the server refused our login; "" once a login works again
        self.job: asyncio.Task[list[Result]] | None = None  # the send in flight (see ``start``)
        self.width = config.connections  # connections used at once: fewer once the server refused one
        self.narrowed_at = 0.0  # time.monotonic() when the width was lowered

    def close(self) -> None:
        self.abandon()
        for client in self.clients:
            if client.is_connected:
                try:
                    self.loop.run_until_complete(asyncio.wait_for(client.quit(), 5))
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()
        self.clients.clear()
        self.loop.close()

    def send(self, envelopes: Sequence[Envelope], commit: Callable[[list[str]], None]) -> list[Result]:
        """Send ``envelopes``, calling ``commit(ids)`` after staging and before the final dots."""
        self.start(envelopes, commit)
        return self.finish()

    def start(self, envelopes: Sequence[Envelope], commit: Callable[[list[str]], None]) -> None:
        """Begin sending ``envelopes``; the conversation moves on in ``pump`` and ``finish``.

        This lets a backlog's replies go out while the next batch is decided, in this one thread:
        the SMTP round trips are waited for between decisions instead of after them (they were a
        fifth of a backlog's time). ``commit`` runs inside ``pump`` or ``finish``, so the caller
        pumps only where its state is whole (between two messages), as it is wherever it commits.
        """
        if self.job is not None:
            raise RuntimeError("a send is already in flight")
        self.job = self.loop.create_task(self._send_all(list(envelopes), commit))

    def pump(self) -> None:
        """Let the send in flight take what the server has answered, without waiting for more."""
        job = self.job
        if job is None or job.done():
            return
        steps_left = PUMP_STEPS  # a reply, the task it wakes, the next command: a few loop turns

        def step() -> None:  # runs once a turn; one run_forever for all of them (each costs its set-up)
            nonlocal steps_left
            steps_left -= 1
            if steps_left <= 0 or job.done():
                self.loop.stop()
            else:
                self.loop.call_soon(step)

        self.loop.call_soon(step)
        self.loop.run_forever()

    def finish(self) -> list[Result]:
        """Wait for the send in flight; its results (none when nothing was in flight). Raises its error."""
        job, self.job = self.job, None
        if job is None:
            return []
        return self.loop.run_until_complete(job)

    def abandon(self) -> None:
        """The caller failed with a send in flight: stop it. A staged reply's connection is closed
        before its dot (the server discards it: still queued); one whose dot went out after its
        commit stays ``committing`` and counts as sent, as after a crash."""
        job, self.job = self.job, None
        if job is None:
            return
        if not job.done():
            job.cancel()
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(job)
            for client in self.clients:
                client.close()
        elif not job.cancelled():
            job.exception()  # the caller's own error is the one to report

    async def _send_all(self, envelopes: list[Envelope], commit: Callable[[list[str]], None]) -> list[Result]:
        results: dict[str, Result] = {}
        waiting = envelopes
        while waiting:  # bounded: a round's replies come back only when the width shrank
            width = self._width()
            done, again = await self._round(waiting[:width], commit)
            results.update((r.id, r) for r in done)
            waiting = again + waiting[width:]
        in_order = [results[env.id] for env in envelopes]
        self._note_health(in_order)
        return in_order

    def _width(self) -> int:
        if self.width < self.config.connections and time.monotonic() - self.narrowed_at > WIDTH_RETRY_SECONDS:
            self.width = self.config.connections
        return self.width

    def _narrow(self, taken: int) -> None:
        """The server took ``taken`` connections at once and refused one more: use that many from now on."""
        log.info("the mail server took %d connections at once and refused one more; sending over %d "
                 "(smtp.connections is %d, tried again in %d min)", taken, taken, self.config.connections,
                 WIDTH_RETRY_SECONDS // 60)
        self.width = taken
        self.narrowed_at = time.monotonic()

    def _note_health(self, results: list[Result]) -> None:
        refused = [r for r in results if r.status == LOGIN]
        if refused:
            code, detail = refused[0].code, refused[0].detail
            self.login_error = f"login refused ({code} {detail})" if code in LOGIN_CODES else detail
        elif any(r.status in (SENT, PERMANENT) for r in results):  # the server talked to us after a login
            self.login_error = ""
        if any(r.status == SENT for r in results):
            self.last_ok = time.time()

    async def _round(self, envelopes: list[Envelope], commit: Callable[[list[str]], None],
                     ) -> tuple[list[Result], list[Envelope]]:
        """Send one reply over each connection; the results, and the replies to send again at once (those
        of connections the server refused while it took others)."""
        log.debug("sending a round of %d over %d open connections", len(envelopes),
                  sum(1 for c in self.clients if c.is_connected))
        while len(self.clients) < len(envelopes):
            self.clients.append(self._new_client())
        pairs = list(zip(envelopes, self.clients, strict=False))
        staged = await asyncio.gather(*(self._stage(client, env) for env, client in pairs))
        again = self._refused_beside_others(pairs, staged)
        ready = [(env, client) for (env, client), early in zip(pairs, staged, strict=True) if early is None]
        early_results = (early.result if isinstance(early, Unopened) else early for early in staged)
        results = {r.id: r for r in early_results if r is not None and r.id not in again}
        if ready:
            try:
                commit([env.id for env, _ in ready])
            except BaseException:
                for _, client in ready:  # never leave a staged DATA open: the next command would join it
                    client.close()
                raise
            released = []
            for env, client in ready:  # the point of no return, straight after the commit
                if self._release(client):
                    released.append((env, client))
                else:  # the connection died while staged: the server discarded the message
                    results[env.id] = Result(env.id, TEMPORARY, -1, "connection lost before the end of data")
            faults.point("released")
            finished = await asyncio.gather(*(self._finish(client, env) for env, client in released))
            results.update((r.id, r) for r in finished)
        return [results[env.id] for env in envelopes if env.id not in again], list(again.values())

    def _refused_beside_others(self, pairs: list[tuple[Envelope, aiosmtplib.SMTP]],
                               staged: list[Result | Unopened | None]) -> dict[str, Envelope]:
        """The replies whose connection the server refused while it held others open (this round's or
        earlier ones', idle): the width is too large. Those connections are dropped and the width lowered to
        what the server holds."""
        unopened = [(env, client) for (env, client), early in zip(pairs, staged, strict=True)
                    if isinstance(early, Unopened)]
        taken = sum(1 for client in self.clients if client.is_connected)
        if not unopened or taken == 0:
            return {}
        self._narrow(taken)
        for _, client in unopened:
            self.clients.remove(client)
        return {env.id: env for env, _ in unopened}

    @staticmethod
    def _release(client: aiosmtplib.SMTP) -> bool:
        """Write the final dot; False when the connection is already gone."""
        try:
            if client.protocol is None:
                return False
            client.protocol.write(b".\r\n")
            return True
        except (aiosmtplib.SMTPException, OSError, RuntimeError):
            client.close()
            return False

    def _new_client(self) -> aiosmtplib.SMTP:
        server = self.config.server
        implicit = server.tls == "implicit"
        return aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=implicit,
            start_tls=server.tls == "starttls",
            tls_context=tls_context(server.verify_certificate, str(server.ca_file) if server.ca_file else None)
            if server.tls != "none" else None,
            timeout=server.timeout_seconds,
        )

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            return
        server = self.config.server
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            untrusted = _untrusted_certificate(exc)
            if untrusted is None:
                raise
            client.close()
            raise LoginRefused(0, f"the certificate of {server.host} is not trusted ({untrusted}); set smtp.ca_file "
                                  "to the server's CA, or fix the certificate") from exc
        if server.user and server.password is not None:
            try:
                password = server.password.reveal()  # read again at each connection: a fixed file counts
            except (OSError, RuntimeError) as exc:
                client.close()
                raise LoginRefused(0, f"cannot read the SMTP password ({exc})") from exc
            try:
                await client.login(server.user, password)
            except aiosmtplib.SMTPResponseException as exc:
                client.close()  # a new connection, and a new login, next time
                raise LoginRefused(exc.code, exc.message) from exc
            except aiosmtplib.SMTPException as exc:  # e.g. the server offers no AUTH at all
                client.close()
                raise LoginRefused(0, f"login refused ({exc})") from exc

    async def _stage(self, client: aiosmtplib.SMTP, env: Envelope) -> Result | Unopened | None:
        """MAIL, RCPT, DATA and the body; None when only the final dot is missing."""
        try:
            await self._connect(client)
        except LoginRefused as exc:
            return Result(env.id, LOGIN, exc.code, exc.detail)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            return Unopened(Result(env.id, TEMPORARY, -1, f"{type(exc).__name__}: {exc}"))
        try:
            if env.to.isascii() and env.raw.isascii():
                await self._mail_ascii(client, env)
            else:
                refused = await self._mail_utf8(client, env)
                if refused is not None:
                    return refused
            response = await client.execute_command(b"DATA")
            if response.code != 354:
                await self._reset(client)
                return Result(env.id, classify_code(response.code), response.code, response.message)
            assert client.protocol is not None
            client.protocol.write(data_payload(env.raw))
            return None
        except aiosmtplib.SMTPRecipientRefused as exc:
            await self._reset(client)
            return Result(env.id, classify_code(exc.code), exc.code, exc.message)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(client)
            return Result(env.id, classify_code(exc.code), exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            return Result(env.id, TEMPORARY, -1, f"{type(exc).__name__}: {exc}")

    @staticmethod
    async def _mail_ascii(client: aiosmtplib.SMTP, env: Envelope) -> None:
        """MAIL and RCPT; raises as aiosmtplib's ``mail`` and ``rcpt`` do when the server refuses.

        Plain addresses are written as they are: aiosmtplib's ``mail`` and ``rcpt`` parse each address
        again (``email.utils.parseaddr``, 15 us each, a tenth of the SMTP conversation's own time).
        The first transaction of a connection still goes through them, for its EHLO.
        """
        if client.is_ehlo_or_helo_needed or not (PLAIN_ADDRESS.fullmatch(env.mail_from)
                                                 and PLAIN_ADDRESS.fullmatch(env.to)):
            await client.mail(env.mail_from)
            await client.rcpt(env.to)
            return
        response = await client.execute_command(b"MAIL", b"FROM:<%s>" % env.mail_from.encode("ascii"))
        if response.code != 250:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, env.mail_from)
        response = await client.execute_command(b"RCPT", b"TO:<%s>" % env.to.encode("ascii"))
        if response.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, env.to)

    async def _mail_utf8(self, client: aiosmtplib.SMTP, env: Envelope) -> Result | None:
        """MAIL with SMTPUTF8 and RCPT for a non-ASCII address (RFC 6531), where the server offers it.

        Without it the reply cannot be delivered as it is (no server may rewrite the address), so it
        fails for good with a reason the owner is told (``smtp-failed``): answer that customer by hand.
        """
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        if not client.supports_extension("smtputf8"):
            return Result(env.id, PERMANENT, 553, f"the mail server {self.config.server.host} does not offer "
                                                  f"SMTPUTF8, which the non-ASCII address {env.to} needs")
        await client.mail(env.mail_from, options=["SMTPUTF8"], encoding="utf-8")
        await client.rcpt(env.to, encoding="utf-8")
        return None

    async def _finish(self, client: aiosmtplib.SMTP, env: Envelope) -> Result:
        try:
            assert client.protocol is not None
            response = await client.protocol.read_response(timeout=self.config.server.timeout_seconds)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # The dot was written after the commit; the ledger treats the reply as sent (see above).
            client.close()
            log.warning("no answer after the end of data for %s (%s); counted as sent", env.id, exc)
            return Result(env.id, SENT, 0, f"unconfirmed: {type(exc).__name__}")
        if response.code == 250:
            return Result(env.id, SENT, 250, response.message)
        return Result(env.id, classify_code(response.code), response.code, response.message)

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
