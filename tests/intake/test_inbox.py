"""IMAP in, against a real Dovecot: peek without reading, mark without deleting, wait without spinning."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supportd.intake.inbox import ConnectionLost, Mailbox, appended_uids
from supportd_testing.localmail import Dovecot, MailUser

from conftest import World, mail


def open_mailbox(world: World) -> Mailbox:
    box = Mailbox(world.config().imap)
    box.connect()
    return box


def test_fetch_does_not_mark_mail_read_and_marks_add_a_keyword_only(world: World) -> None:
    """Fetching leaves mail unread; marking handled adds our keyword and nothing else."""
    uid = world.deliver(mail())
    box = open_mailbox(world)
    assert box.unhandled_uids() == [uid]
    raw = box.fetch([uid])[uid]
    assert b"Where is my order?" in raw
    box.mark_handled([uid])
    assert box.unhandled_uids() == []
    box.close()
    assert world.flags()[uid] == (b"$SupportdHandled",)


def test_imaplib_formats_the_protocol_only_for_a_logger_that_shows_it(world: World,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """imapclient has imaplib format each line it reads (and each fetched message, twice) for the
    imapclient.imaplib logger: only while that logger shows debug messages (SUPPORTD_DEBUG=protocol)."""
    uid = world.deliver(mail())
    box = open_mailbox(world)
    assert box.client is not None and box.client._imap.debug == 0
    box.fetch([uid])
    box.close()
    assert not [r for r in caplog.records if r.name == "imapclient.imaplib"]
    with caplog.at_level(logging.DEBUG, logger="imapclient"):
        box = open_mailbox(world)
        box.fetch([uid])
        box.close()
    assert any("Where is my order?" in r.getMessage() for r in caplog.records if r.name == "imapclient.imaplib")


def test_wait_returns_when_mail_arrives(world: World) -> None:
    """Waiting in IDLE wakes up when a message arrives (Dovecot announces it after about 0.5 s)."""
    box = open_mailbox(world)
    threading.Timer(0.3, lambda: world.deliver(mail())).start()
    started = time.monotonic()
    assert box.wait(20, lambda: True) is True
    assert time.monotonic() - started < 10
    box.close()


def test_wait_ends_at_its_time_so_idle_is_renewed(world: World) -> None:
    """With nothing arriving, IDLE ends when asked (supportd renews it well before the 30-minute limit)."""
    box = open_mailbox(world)
    started = time.monotonic()
    assert box.wait(2, lambda: True) is False
    assert 1.5 < time.monotonic() - started < 6
    box.close()


def test_server_dying_during_idle_is_noticed_not_spun_on(world: World) -> None:
    """When Dovecot goes away mid-IDLE, wait raises ConnectionLost promptly instead of looping."""
    box = open_mailbox(world)
    threading.Timer(0.5, world.dovecot.stop).start()
    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        box.wait(30, lambda: True)
    assert time.monotonic() - started < 10
    box.close()


def test_mail_arriving_between_a_pass_and_idle_is_not_missed(world: World) -> None:
    """A message that lands after the last search and before IDLE starts is found before waiting."""
    box = open_mailbox(world)
    assert box.unhandled_uids() == []
    world.deliver(mail())
    started = time.monotonic()
    assert box.wait(20, lambda: True, above=0) is True
    assert time.monotonic() - started < 2
    box.close()


@pytest.fixture
def tls_world(short_tmp: Path) -> Iterator[tuple[Dovecot, MailUser]]:
    from supportd_testing.localmail import dovecot_available

    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    user = MailUser("support@shop.example", "tls-secret")
    dovecot = Dovecot(short_tmp / "dovecot", users=[user], tls=True)
    dovecot.start()
    yield dovecot, user
    dovecot.stop()


def tls_mailbox(dovecot: Dovecot, user: MailUser, tls: str, ca_file: Path | None) -> Mailbox:
    from supportd.base.config import ImapConfig, Secret, ServerConfig

    port = dovecot.tls_port if tls == "implicit" else dovecot.port
    assert port is not None
    server = ServerConfig(host="localhost", port=port, tls=tls, ca_file=ca_file, user=user.address,
                          password=Secret("test", lambda: user.password), timeout_seconds=5)
    return Mailbox(ImapConfig(server=server))


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_tls_connects_with_the_shops_certificate_authority(tls_world: tuple[Dovecot, MailUser], tls: str) -> None:
    """Implicit TLS (993-style) and STARTTLS both work when the server's certificate verifies."""
    dovecot, user = tls_world
    dovecot.append(user, mail())
    box = tls_mailbox(dovecot, user, tls, dovecot.ca_file)
    box.connect()
    assert len(box.unhandled_uids()) == 1
    box.close()


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_certificate_checks_are_on_by_default(tls_world: tuple[Dovecot, MailUser], tls: str) -> None:
    """A certificate the system does not trust is refused: no silent fallback to an unchecked connection."""
    from supportd.intake.inbox import LoginRefused

    dovecot, user = tls_world
    box = tls_mailbox(dovecot, user, tls, ca_file=None)
    with pytest.raises(LoginRefused, match=r"not trusted \(.+\); set imap\.ca_file"):
        box.connect()  # a settings problem: the daemon tells the owner and retries, like a refused login


def test_sent_scan_skips_our_own_copies_but_not_a_persons_reply(world: World) -> None:
    """Copies supportd appended are known by their UIDs and not fetched back; a person's reply filed between them is."""
    box = open_mailbox(world)
    ours = box.append_sent([mail(subject=f"Our copy {n}") for n in range(3)])
    person = world.deliver(mail(subject="Re: a person's reply"), folder="Sent")
    ours |= box.append_sent([mail(subject="Our copy 4")])
    assert len(ours) == 4 and len({uidvalidity for uidvalidity, _ in ours}) == 1
    _, high, headers = box.sent_since(0, 0, dt.date(2000, 1, 1), ours)
    box.close()
    assert list(headers) == [person]
    assert high == max(uid for _, uid in ours)


def test_append_answers_are_read_within_their_batch() -> None:
    """APPENDUID ranges are read as UIDs, never more than the copies sent (a server's range is not trusted)."""
    assert list(appended_uids(b"[APPENDUID 7 3:5,9] Append completed.", 4)) == [(7, 3), (7, 4), (7, 5), (7, 9)]
    assert len(list(appended_uids(b"[APPENDUID 7 1:4000000000] done", 50))) == 50
    assert list(appended_uids(b"Append completed.", 3)) == []
