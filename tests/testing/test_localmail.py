"""The local mail servers behave like the real ones supportd will meet (they are real ones)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from supportd_testing.localmail import (
    DEFAULT_USER,
    Dovecot,
    LocalMailError,
    MailUser,
    ReceivedMail,
    SmtpSink,
    deliver_to_dovecot,
    live_group_members,
)

CUSTOMER_MAIL = (
    b"From: Ann <ann@customer.example>\r\n"
    b"To: test@example.com\r\n"
    b"Subject: Where is my order?\r\n"
    b"Message-ID: <order-1@customer.example>\r\n"
    b"\r\n"
    b"Hello,\r\n.leading dot and trailing space \r\n\r\nAnn\r\n"
)


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A folder short enough for Dovecot's unix sockets (pytest's tmp_path may not be)."""
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot(short_root: Path) -> Iterator[Dovecot]:
    with Dovecot(short_root) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def send(sink: SmtpSink, raw: bytes = CUSTOMER_MAIL, to: str = "test@example.com") -> None:
    asyncio.run(
        aiosmtplib.send(
            raw, sender="shop@example.org", recipients=[to], hostname=sink.host, port=sink.port
        )
    )


def fetch_inbox(client: IMAPClient) -> dict[int, dict[bytes, object]]:
    client.select_folder("INBOX", readonly=True)
    return dict(client.fetch(client.search("ALL"), ["BODY.PEEK[]", "FLAGS"]))


# -- Dovecot ----------------------------------------------------------------------------------


def test_append_returns_uid_and_fetch_gives_exact_bytes_unseen(dovecot: Dovecot) -> None:
    """APPEND returns the UID; BODY.PEEK[] gives the exact bytes back and leaves \\Seen unset."""
    uid = dovecot.append(DEFAULT_USER, CUSTOMER_MAIL)
    client = dovecot.connect(DEFAULT_USER)
    try:
        message = fetch_inbox(client)[uid]
    finally:
        client.logout()
    assert message[b"BODY[]"] == CUSTOMER_MAIL
    assert b"\\Seen" not in message[b"FLAGS"]  # type: ignore[operator]


def test_mailboxes_sent_and_archive_exist(dovecot: Dovecot) -> None:
    """The account has INBOX, Sent (\\Sent special-use) and Archive, separator '/'."""
    client = dovecot.connect(DEFAULT_USER)
    try:
        folders = {name: (flags, sep) for flags, sep, name in client.list_folders()}
    finally:
        client.logout()
    assert set(folders) >= {"INBOX", "Sent", "Archive"}
    assert b"\\Sent" in folders["Sent"][0]
    assert folders["INBOX"][1] == b"/"


def test_idle_reports_append_from_other_connection(dovecot: Dovecot) -> None:
    """An IDLE client hears of a message APPENDed elsewhere, ~0.5 s later (Dovecot's delay)."""
    client = dovecot.connect(DEFAULT_USER)
    try:
        client.select_folder("INBOX")
        client.idle()
        appended_at = time.monotonic()
        dovecot.append(DEFAULT_USER, CUSTOMER_MAIL)
        responses = client.idle_check(timeout=5)
        delay = time.monotonic() - appended_at
        client.idle_done()
    finally:
        client.logout()
    assert (1, b"EXISTS") in responses
    assert delay < 2.0


def test_restart_keeps_mail_and_port(dovecot: Dovecot) -> None:
    """restart() comes back on the same port with the mail still there."""
    port = dovecot.port
    uid = dovecot.append(DEFAULT_USER, CUSTOMER_MAIL)
    dovecot.restart()
    client = dovecot.connect(DEFAULT_USER)
    try:
        assert fetch_inbox(client)[uid][b"BODY[]"] == CUSTOMER_MAIL
    finally:
        client.logout()
    assert dovecot.port == port


def test_stop_leaves_no_process_in_group(dovecot: Dovecot) -> None:
    """stop() with a logged-in client leaves no live process in Dovecot's process group."""
    client = dovecot.connect(DEFAULT_USER)
    client.select_folder("INBOX")
    assert dovecot.pgid is not None
    assert len(live_group_members(dovecot.pgid)) > 1
    dovecot.stop()
    assert live_group_members(dovecot.pgid) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dovecot.host, dovecot.port), timeout=1).close()


def test_add_user_while_running(dovecot: Dovecot) -> None:
    """A user added while Dovecot runs can log in at once; a wrong password fails fast."""
    dovecot.add_user(MailUser("bob@example.com", "hunter2"))
    dovecot.connect("bob@example.com").logout()
    started = time.monotonic()
    with pytest.raises(LoginError):
        dovecot.connect(MailUser("bob@example.com", "wrong"))
    assert time.monotonic() - started < 1.0  # answered on Dovecot's 500 ms tick, not after 2 s
    dovecot.connect("bob@example.com").logout()  # and no anvil penalty afterwards


def test_tls_listener_verifies_against_ca_file(short_root: Path) -> None:
    """The TLS port's certificate verifies against ca_file for 127.0.0.1 and localhost."""
    with Dovecot(short_root, tls=True) as server:
        assert server.ca_file is not None and server.tls_port is not None
        for hostname in ("127.0.0.1", "localhost"):
            context = ssl.create_default_context(cafile=str(server.ca_file))
            context.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default
            client = IMAPClient(hostname, port=server.tls_port, ssl=True, ssl_context=context)
            client.login(DEFAULT_USER.address, DEFAULT_USER.password)
            client.logout()


def test_too_long_root_is_refused() -> None:
    """A root too long for unix sockets is refused with a message naming the fix."""
    server = Dovecot(Path("/tmp") / ("x" * 90))
    with pytest.raises(LocalMailError, match="shorter"):
        server.start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root is mail handled as 'nobody'")
def test_root_inside_private_folder_is_refused(short_root: Path) -> None:
    """As root, a root that 'nobody' cannot reach is refused with a message naming the fix."""
    short_root.chmod(0o700)
    with pytest.raises(LocalMailError, match="nobody"):
        Dovecot(short_root / "d").start()


def test_start_failure_raises_with_log(short_root: Path) -> None:
    """A port already in use makes start() raise LocalMailError carrying Dovecot's log."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = Dovecot(short_root, port=busy.getsockname()[1])
        with pytest.raises(LocalMailError, match="Address already in use"):
            server.start()
    assert not server.running


# -- SmtpSink -----------------------------------------------------------------------------------


def test_sink_keeps_exact_message(sink: SmtpSink) -> None:
    """A message sent with aiosmtplib is kept with its envelope and exact bytes."""
    send(sink)
    [mail] = sink.wait_for(1, timeout=5)
    assert mail.raw == CUSTOMER_MAIL
    assert mail.mail_from == "shop@example.org"
    assert mail.rcpt_tos == ["test@example.com"]
    assert mail.message()["subject"] == "Where is my order?"


def test_fail_next_451_fails_one_send_only(sink: SmtpSink) -> None:
    """fail_next(451) makes one send raise with code 451; the next one is accepted."""
    sink.fail_next(451)
    with pytest.raises(aiosmtplib.SMTPDataError) as failure:
        send(sink)
    assert failure.value.code == 451
    send(sink)
    assert len(sink.wait_for(1, timeout=5)) == 1


def test_fail_next_at_rcpt_refuses_recipient(sink: SmtpSink) -> None:
    """fail_next(550, at="RCPT") refuses the recipient with 550."""
    sink.fail_next(550, at="RCPT")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as failure:
        send(sink)
    assert failure.value.recipients[0].code == 550
    assert sink.messages == []


def test_sink_down_then_up_on_same_port(sink: SmtpSink) -> None:
    """After stop() sends are refused; start() listens again on the same port."""
    port = sink.port
    sink.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        send(sink)
    sink.start()
    send(sink)
    assert sink.port == port
    assert len(sink.wait_for(1, timeout=5)) == 1


def test_deliver_errors_do_not_crash_the_sink() -> None:
    """A deliver callback that raises is logged; the message is still accepted and kept."""

    def broken(mail: ReceivedMail) -> None:
        raise RuntimeError("boom")

    with SmtpSink(deliver=broken) as sink:
        send(sink)
        send(sink)
        assert len(sink.wait_for(2, timeout=5)) == 2
        assert [str(error) for error in sink.delivery_errors] == ["boom", "boom"]


def test_sink_with_auth_needs_login() -> None:
    """With auth set, sending needs a login; the right password is accepted."""
    with SmtpSink(auth={"shop": "pw"}) as sink:
        with pytest.raises(aiosmtplib.SMTPException):
            send(sink)
        asyncio.run(
            aiosmtplib.send(
                CUSTOMER_MAIL,
                sender="shop@example.org",
                recipients=["test@example.com"],
                hostname=sink.host,
                port=sink.port,
                username="shop",
                password="pw",
            )
        )
        assert len(sink.wait_for(1, timeout=5)) == 1


def test_deliver_to_dovecot_lands_in_inbox(dovecot: Dovecot) -> None:
    """deliver_to_dovecot APPENDs SMTP mail to a known recipient's INBOX, ignoring others."""
    with SmtpSink(deliver=deliver_to_dovecot(dovecot)) as sink:
        send(sink, to="TEST@example.com")
        send(sink, to="stranger@example.net")
    client = dovecot.connect(DEFAULT_USER)
    try:
        bodies = [message[b"BODY[]"] for message in fetch_inbox(client).values()]
    finally:
        client.logout()
    assert bodies == [CUSTOMER_MAIL]
    assert sink.delivery_errors == []
