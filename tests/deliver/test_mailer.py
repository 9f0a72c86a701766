"""SMTP out, against a real aiosmtpd server: the commit point before the final dot, and honest outcomes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from aiosmtplib.email import quote_address
from hypothesis import given, settings
from hypothesis import strategies as st

from supportd.base.config import ServerConfig, SmtpConfig
from supportd.deliver import mailer as mailer_module
from supportd.deliver.mailer import (
    LEADING_DOT,
    LINE_ENDINGS,
    LOGIN,
    PERMANENT,
    PLAIN_ADDRESS,
    SENT,
    TEMPORARY,
    Envelope,
    Mailer,
    data_payload,
)
from supportd_testing.localmail import SmtpSink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def mailer_for(sink: SmtpSink, connections: int = 4) -> Mailer:
    server = ServerConfig(host="127.0.0.1", port=sink.port, tls="none", timeout_seconds=5)
    return Mailer(SmtpConfig(server=server, connections=connections))


def envelope(number: int, to: str = "ada@example.org") -> Envelope:
    raw = f"From: s@shop.example\r\nTo: {to}\r\nSubject: n{number}\r\nMessage-ID: <m{number}@x>\r\n\r\nHi\r\n"
    return Envelope(f"<m{number}@x>", "support@shop.example", to, raw.encode())


def test_data_payload_doubles_leading_dots_and_uses_crlf() -> None:
    """A body line starting with '.' cannot end the message early; bare LF and CR become CRLF."""
    assert data_payload(b"a\n.b\r.c\r\n..d") == b"a\r\n..b\r\n..c\r\n...d\r\n"
    assert data_payload(b".a\nb\n.") == b"..a\r\nb\r\n..\r\n"


@settings(max_examples=500, deadline=None)
@given(raw=st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b".", b"..", b"a", b"=2E", b" ", b"\xc3\xbc"]),
                    max_size=30).map(b"".join))
def test_data_payload_is_what_the_two_regex_passes_give(raw: bytes) -> None:
    """The short cut for LF-only text without leading dots changes no byte of what is sent."""
    body = LINE_ENDINGS.sub(b"\r\n", raw)
    body = body if body.endswith(b"\r\n") else body + b"\r\n"
    assert data_payload(raw) == LEADING_DOT.sub(b"..", body)


ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"


@settings(max_examples=500, deadline=None)
@given(address=st.from_regex(rf"[{ATEXT}]{{1,8}}(\.[{ATEXT}]{{1,8}}){{0,2}}@[a-z0-9-]{{1,8}}(\.[A-Za-z0-9-]{{1,8}}){{0,2}}",
                             fullmatch=True)
       | st.text(alphabet=ATEXT + ".@ <>\"()[],;:\\\r\nü", max_size=24))
def test_a_plain_address_is_written_as_aiosmtplib_quotes_it(address: str) -> None:
    """MAIL FROM and RCPT TO with an address taken as it is say what aiosmtplib's own quoting would."""
    if PLAIN_ADDRESS.fullmatch(address):
        assert quote_address(address) == f"<{address}>"


def test_refusals_on_a_reused_connection_count_as_on_a_new_one(sink: SmtpSink) -> None:
    """After a first reply, the next ones on the same connection are refused, or sent, by their codes as before."""
    sink.refuse("later@example.org", 451, "greylisted")
    sink.refuse("never@example.org", 550, "no such user")
    mailer = mailer_for(sink, connections=1)
    envelopes = [envelope(1), envelope(2, "later@example.org"), envelope(3, "never@example.org"), envelope(4)]
    results = mailer.send(envelopes, lambda ids: None)
    mailer.close()
    assert [(r.status, r.code) for r in results] == [(SENT, 250), (TEMPORARY, 451), (PERMANENT, 550), (SENT, 250)]
    assert sorted(str(m.message()["Subject"]) for m in sink.wait_for(2, timeout=5)) == ["n1", "n4"]


def test_nothing_reaches_the_server_before_the_commit(sink: SmtpSink) -> None:
    """When the ledger commits, every message is staged but none delivered: the dot comes after."""
    mailer = mailer_for(sink)
    seen_at_commit: list[int] = []
    results = mailer.send([envelope(n) for n in range(3)], lambda ids: seen_at_commit.append(len(sink.messages)))
    mailer.close()
    assert seen_at_commit == [0]
    assert [r.status for r in results] == [SENT] * 3
    assert len(sink.wait_for(3, timeout=5)) == 3


def test_a_connection_lost_before_the_dot_delivers_nothing(sink: SmtpSink) -> None:
    """If supportd stops before its commit, the server drops the half-sent messages: sending again delivers once."""
    mailer = mailer_for(sink)

    def crash(ids: list[str]) -> None:
        raise KeyboardInterrupt("stopped before the commit")

    with pytest.raises(KeyboardInterrupt):
        mailer.send([envelope(1), envelope(2)], crash)
    results = mailer.send([envelope(1), envelope(2)], lambda ids: None)
    mailer.close()
    assert [r.status for r in results] == [SENT, SENT]
    subjects = sorted(str(m.message()["Subject"]) for m in sink.wait_for(2, timeout=5))
    assert subjects == ["n1", "n2"]


def test_rounds_use_parallel_connections_and_one_commit_each(sink: SmtpSink) -> None:
    """Nine replies over four connections: three rounds, three commits, nine deliveries."""
    mailer = mailer_for(sink, connections=4)
    commits: list[list[str]] = []
    results = mailer.send([envelope(n) for n in range(9)], commits.append)
    mailer.close()
    assert [len(ids) for ids in commits] == [4, 4, 1]
    assert all(r.status == SENT for r in results)
    assert len(sink.wait_for(9, timeout=5)) == 9


def test_a_send_goes_on_while_the_caller_works_and_pumps(sink: SmtpSink) -> None:
    """Started, a send advances each time the caller pumps (its commits run there): all nine replies
    are delivered before the caller waits for it, and ``finish`` then only collects the results."""
    mailer = mailer_for(sink, connections=4)
    commits: list[list[str]] = []
    mailer.start([envelope(n) for n in range(9)], commits.append)
    for _ in range(5000):  # bounded: the caller's work between two pumps is a short sleep here
        if len(sink.messages) == 9 and mailer.job is not None and mailer.job.done():
            break
        mailer.pump()
        time.sleep(0.001)
    delivered_before_finish = len(sink.messages)
    results = mailer.finish()
    mailer.close()
    assert delivered_before_finish == 9
    assert [len(ids) for ids in commits] == [4, 4, 1]
    assert [r.status for r in results] == [SENT] * 9


def test_a_send_abandoned_in_flight_loses_nothing_and_sends_nothing_twice(sink: SmtpSink) -> None:
    """The caller fails after the first round's commit: that round was released (it counts as sent and
    arrives), the rest was never committed (the server drops what was staged); sending the rest again
    delivers each reply exactly once, on the same mailer."""
    mailer = mailer_for(sink, connections=4)
    commits: list[list[str]] = []
    mailer.start([envelope(n) for n in range(9)], commits.append)
    for _ in range(5000):
        if commits:
            break
        mailer.pump()
        time.sleep(0.001)
    mailer.abandon()
    committed = {i for ids in commits for i in ids}
    assert len(committed) == 4
    rest = [envelope(n) for n in range(9) if envelope(n).id not in committed]
    results = mailer.send(rest, lambda ids: None)
    mailer.close()
    assert [r.status for r in results] == [SENT] * 5
    subjects = sorted(str(m.message()["Subject"]) for m in sink.wait_for(9, timeout=5))
    time.sleep(0.3)  # anything sent twice would arrive meanwhile
    assert len(sink.messages) == 9
    assert subjects == sorted(f"n{n}" for n in range(9))


def test_temporary_and_permanent_refusals_are_told_apart_by_code(sink: SmtpSink) -> None:
    """451 means try again later, 550 means never: the same exception class, different outcomes."""
    sink.refuse("later@example.org", 451, "greylisted")
    sink.refuse("never@example.org", 550, "no such user")
    mailer = mailer_for(sink)
    results = mailer.send([envelope(1, "later@example.org"), envelope(2, "never@example.org"),
                           envelope(3, "ada@example.org")], lambda ids: None)
    mailer.close()
    assert [(r.status, r.code) for r in results] == [(TEMPORARY, 451), (PERMANENT, 550), (SENT, 250)]


def test_refused_after_the_data_counts_by_its_code(sink: SmtpSink) -> None:
    """A server that refuses the message itself (after the dot) gets the same honest outcome."""
    sink.fail_next(552, "message too big", at="DATA")
    mailer = mailer_for(sink)
    [result] = mailer.send([envelope(1)], lambda ids: None)
    mailer.close()
    assert (result.status, result.code) == (PERMANENT, 552)


def test_unreachable_server_is_temporary() -> None:
    """No server listening is a 'try again later', not a failure for good."""
    with SmtpSink() as stopped:
        port = stopped.port
    server = ServerConfig(host="127.0.0.1", port=port, tls="none", timeout_seconds=2)
    mailer = Mailer(SmtpConfig(server=server))
    [result] = mailer.send([envelope(1)], lambda ids: None)
    mailer.close()
    assert result.status == TEMPORARY


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_sends_when_the_certificate_verifies_and_refuses_when_not(mode: str) -> None:
    """STARTTLS and TLS from the first byte both send; an untrusted certificate stops the send, said plainly,
    as a settings problem (the reply stays queued), never as the message's failure."""
    with SmtpSink(tls=mode) as sink:  # type: ignore[arg-type]
        trusted = ServerConfig(host="localhost", port=sink.port, tls=mode, ca_file=sink.ca_file, timeout_seconds=5)
        mailer = Mailer(SmtpConfig(server=trusted))
        [sent] = mailer.send([envelope(1)], lambda ids: None)
        mailer.close()
        untrusted = ServerConfig(host="localhost", port=sink.port, tls=mode, timeout_seconds=5)
        mailer = Mailer(SmtpConfig(server=untrusted))
        [refused] = mailer.send([envelope(2)], lambda ids: None)
        mailer.close()
        assert sent.status == SENT
        assert len(sink.wait_for(1, timeout=5)) == 1
    # the settings' fault, not the message's: kept queued like a refused login, and it says what to set
    assert refused.status == LOGIN and "CERTIFICATE_VERIFY_FAILED" in refused.detail and "ca_file" in refused.detail


def test_a_server_that_takes_fewer_connections_gets_every_reply_at_once() -> None:
    """A provider that takes three connections and refuses a fourth with 421: the replies of the refused
    connections go out at once over the three, the next sends use three, and nothing is sent twice."""
    with SmtpSink(max_connections=3) as limited:
        mailer = mailer_for(limited, connections=8)
        commits: list[list[str]] = []
        first = mailer.send([envelope(n) for n in range(20)], commits.append)
        refused_in_first = limited.refused_connections
        second = mailer.send([envelope(n) for n in range(20, 30)], commits.append)
        mailer.close()
        received = limited.wait_for(30, timeout=10)
        time.sleep(0.3)  # anything sent twice would arrive meanwhile
        assert [r.id for r in first] == [envelope(n).id for n in range(20)]
        assert [r.status for r in first + second] == [SENT] * 30
        assert refused_in_first == 5 and limited.refused_connections == 5  # the second send asked for no more
        assert limited.most_connections == 3
        assert mailer.width == 3
        assert all(len(ids) <= 3 for ids in commits[1:])
        assert sorted(str(m.message()["Subject"]) for m in received) == sorted(f"n{n}" for n in range(30))
        assert len(limited.messages) == 30


def test_the_full_width_is_tried_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the retry interval has passed, a send asks for all its connections again (here: taken)."""
    with SmtpSink(max_connections=2) as sink:
        mailer = mailer_for(sink, connections=4)
        mailer.send([envelope(n) for n in range(4)], lambda ids: None)
        assert mailer.width == 2
        sink.max_connections = None
        mailer.send([envelope(n) for n in range(4, 8)], lambda ids: None)
        assert mailer.width == 2  # not yet
        monkeypatch.setattr(mailer_module, "WIDTH_RETRY_SECONDS", 0.0)
        results = mailer.send([envelope(n) for n in range(8, 12)], lambda ids: None)
        mailer.close()
        assert mailer.width == 4 and sink.most_connections == 4
        assert [r.status for r in results] == [SENT] * 4
        assert len(sink.wait_for(12, timeout=5)) == 12


def test_a_server_that_refuses_every_connection_leaves_the_replies_for_later() -> None:
    """With no connection taken at all, nothing is narrowed: each reply is 'not now', as before."""
    with SmtpSink(max_connections=0) as closed:
        mailer = mailer_for(closed, connections=4)
        results = mailer.send([envelope(n) for n in range(3)], lambda ids: None)
        mailer.close()
        assert [r.status for r in results] == [TEMPORARY] * 3
        assert mailer.width == 4
        assert closed.messages == []


def test_a_refused_reconnect_counts_the_connections_still_open_from_earlier_rounds() -> None:
    """One of four open connections was closed; the server now takes three and refuses it again. The one
    reply of the next send goes out over one of the three still open, at once, not a minute later."""
    with SmtpSink(max_connections=4) as sink:
        mailer = mailer_for(sink, connections=4)
        mailer.send([envelope(n) for n in range(4)], lambda ids: None)
        mailer.clients[0].close()
        for _ in range(500):  # bounded: the server sees the connection end
            if sink.open_connections == 3:
                break
            time.sleep(0.01)
        sink.max_connections = 3
        [result] = mailer.send([envelope(4)], lambda ids: None)
        mailer.close()
        assert result.status == SENT
        assert mailer.width == 3
        assert len(sink.wait_for(5, timeout=5)) == 5
