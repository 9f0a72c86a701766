"""supportd's own reading of FETCH answers gives what imapclient's gives, or declines.

Against a real Dovecot, ``Mailbox.stored`` and ``Mailbox.fetch`` are compared with the earlier
code (imapclient's ``fetch`` and parser); recorded answers check the shapes Dovecot does not send.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import parse_fetch_response

from supportd.intake import fetched
from supportd.intake.inbox import CONNECTION_ERRORS, Mailbox, Stored

from conftest import World, mail

DATE = b'"01-Dec-2026 10:15:27 +0000"'
TRICKY = (b"From: Ada <ada@example.org>\r\nSubject: Re: (order 77120)\r\n\r\n"
          b"Quoting you: )\r\n* 9 FETCH (UID 9 BODY[] {5}\r\nhello)\r\nA1 OK done\r\n{5}\r\n)")
EIGHT_BIT = ("From: Zoë <zoe@example.org>\r\nSubject: Größe\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "Content-Transfer-Encoding: 8bit\r\n\r\nDie Tasse ist kaputt, ärgerlich. 🙁\r\n").encode()


def imapclient_stored(box: Mailbox, uids: list[int]) -> dict[int, Stored]:
    """What ``Mailbox.stored`` gave before: imapclient's fetch and parser."""
    result = {}
    for uid, data in box._client().fetch(uids, ["RFC822.SIZE", "INTERNALDATE"]).items():
        arrived = data.get(b"INTERNALDATE")
        result[uid] = Stored(size=int(data.get(b"RFC822.SIZE", 0)),
                             arrived=arrived if isinstance(arrived, dt.datetime) else None)
    return result


def imapclient_raw(box: Mailbox, uids: list[int]) -> dict[int, bytes]:
    """What ``Mailbox.fetch`` gave before."""
    answer = box._client().fetch(uids, ["BODY.PEEK[]"])
    return {uid: data[b"BODY[]"] for uid, data in answer.items() if isinstance(data.get(b"BODY[]"), bytes)}


def recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[Any], Any]]:
    """Each (imaplib's data, ``fetched.parse``'s answer) from here on."""
    seen: list[tuple[list[Any], Any]] = []
    parse = fetched.parse

    def recorded(data: list[Any]) -> Any:
        seen.append((data, parse(data)))
        return seen[-1][1]

    monkeypatch.setattr(fetched, "parse", recorded)
    return seen


def test_dovecots_answers_read_as_imapclient_reads_them(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain mail, a literal holding ')', '{5}', CRLF and a fake FETCH line, 8-bit mail, other time
    arrival times, a UID that was expunged and one that never was: the same sizes, dates and bytes."""
    arrived = [dt.datetime(2026, 3, 1, 9, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=h, minutes=m)))
               for h, m in ((0, 0), (5, 30), (-8, 0), (-3, -30))]
    uids = [world.deliver(raw, arrived=when) for raw, when in zip(
        [mail(), TRICKY, EIGHT_BIT, mail(body="Kurz.")], arrived, strict=True)]
    gone = world.deliver(mail(subject="Deleted by the owner"))
    box = Mailbox(world.config().imap)
    box.connect()
    other = world.imap()
    other.select_folder("INBOX")
    other.delete_messages([gone])
    other.expunge()
    other.logout()
    box._client().noop()  # till then Dovecot answers for the expunged message (size, date 1970, no bytes)
    seen = recording(monkeypatch)
    asked = [uids[0], gone, *uids[1:], gone + 50]
    stored, raws = box.stored(asked), box.fetch(asked)
    assert [exactly(parsed) for _, parsed in seen] == [exactly(imapclients(data)) for data, _ in seen]  # none declined
    assert stored == imapclient_stored(box, asked)
    assert raws == imapclient_raw(box, asked)
    box.close()
    assert list(stored) == list(raws) == uids
    assert [s.arrived for s in stored.values()] == arrived
    assert raws[uids[1]] == TRICKY and raws[uids[2]] == EIGHT_BIT
    assert [s.size for s in stored.values()] == [len(raws[uid]) for uid in uids]


def test_a_flag_changed_meanwhile_is_not_taken_for_a_message(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot tells of a flag another session set with the next FETCH's answer, as ``* n FETCH
    (FLAGS (...))`` without UID: it is skipped, the answer is read by supportd's parser all the same."""
    uids = [world.deliver(mail(subject=f"Message {n}")) for n in range(4)]
    box = Mailbox(world.config().imap)
    box.connect()
    seen = recording(monkeypatch)
    for read, flag in ((box.stored, b"$Other"), (box.fetch, b"$More")):
        other = world.imap()
        other.select_folder("INBOX")
        other.add_flags(uids[1:3], [flag])
        other.logout()
        answer = read(uids[1:])
        assert list(answer) == uids[1:]
        data, parsed = seen[-1]
        assert [line for line in data if isinstance(line, bytes) and b"UID" not in line and flag in line]
        assert parsed is not None and sorted(parsed) == uids[1:]
    assert box.stored(uids) == imapclient_stored(box, uids)
    box.close()


def test_an_answer_it_declines_is_read_by_imapclient(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where supportd's parser declines, imapclient reads the same data: the same results."""
    uids = [world.deliver(mail(subject=f"Message {n}")) for n in range(3)]
    box = Mailbox(world.config().imap)
    box.connect()
    expected = box.stored(uids), box.fetch(uids)
    monkeypatch.setattr(fetched, "parse", lambda data: None)
    assert (box.stored(uids), box.fetch(uids)) == expected
    assert expected[0] == imapclient_stored(box, uids)
    box.close()


def test_errors_are_imapclients(world: World) -> None:
    """A command the server refuses raises IMAPClientError; a dead server, one of CONNECTION_ERRORS."""
    world.deliver(mail())
    box = Mailbox(world.config().imap)
    box.connect()
    with pytest.raises(IMAPClientError):
        box.stored([0])  # UID 0 is no UID: BAD
    assert box.fetch([1])
    world.dovecot.stop()
    with pytest.raises(CONNECTION_ERRORS):
        box.fetch([1])
    box.close()


# ------------------------------------------------------------ recorded answers


def imapclients(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    """imapclient's reading of the same data, without its SEQ and the items supportd does not keep."""
    parsed = parse_fetch_response(data, normalise_times=False, uid_is_key=True)
    return {uid: {k: v for k, v in items.items() if k in (fetched.SIZE, fetched.INTERNALDATE, fetched.BODY)}
            for uid, items in parsed.items()}


def exactly(parsed: dict[int, dict[bytes, Any]] | None) -> Any:
    """Dates with their zone and its type (datetimes that are the same instant compare equal)."""
    return parsed and {uid: {k: (v, v.utcoffset(), type(v.tzinfo)) if isinstance(v, dt.datetime) else v
                             for k, v in items.items()} for uid, items in parsed.items()}


@pytest.mark.parametrize("data", [
    [b"1 (UID 7 RFC822.SIZE 402 INTERNALDATE " + DATE + b")"],
    [b"1 (INTERNALDATE " + DATE + b" RFC822.SIZE 402 UID 7)", b"2 (RFC822.SIZE 0 UID 9 INTERNALDATE " + DATE + b")"],
    [b'1 (UID 7 FLAGS (\\Seen $Label) RFC822.SIZE 402 MODSEQ (12) INTERNALDATE " 1-Dec-2026 23:59:59 -0930")'],
    [b'1 (UID 7 RFC822.SIZE 402 INTERNALDATE "29-Feb-2028 00:00:00 +0530")'],
    [b"3 (UID 7 RFC822.SIZE 402)", b"3 (UID 7 INTERNALDATE " + DATE + b")"],  # one message in two responses
    [(b"1 (UID 7 BODY[] {5}", b"he)lo"), b")", (b"2 (UID 8 BODY[] {0}", b""), b")"],
    [(b"1 (UID 7 BODY[] {8}", b"a\r\n{5}\r\n"), b" FLAGS (\\Seen))"],
    [b"1 (UID 7 BODY[] NIL)"],
    [None],
])
def test_recorded_answers_read_as_imapclient_reads_them(data: list[Any]) -> None:
    assert exactly(fetched.parse(data)) == exactly(imapclients(data))


def test_unsolicited_updates_are_skipped() -> None:
    """imapclient keys a response without UID by its sequence number: here it would pass for UID 2."""
    data = [b"1 (UID 5 RFC822.SIZE 10 INTERNALDATE " + DATE + b")", b"2 (FLAGS (\\Seen))", b"1 (FLAGS ())"]
    assert fetched.parse(data) == {5: {fetched.SIZE: 10, fetched.INTERNALDATE: dt.datetime(
        2026, 12, 1, 10, 15, 27, tzinfo=dt.UTC)}}
    assert 2 in parse_fetch_response(data, normalise_times=False)


@pytest.mark.parametrize("data", [
    [b"1 (UID 7 ENVELOPE NIL)"],  # an item it does not know
    [b"1 (uid 7 RFC822.SIZE 4)"],
    [b'1 (UID 7 INTERNALDATE "1-Dec-2026 10:15:27 +0000")'],
    [b'1 (UID 7 INTERNALDATE "01-dec-2026 10:15:27 +0000")'],
    [b'1 (UID 7 INTERNALDATE "01-Dec-0099 10:15:27 +0000")'],  # email.utils: 1999
    [b'1 (UID 7 INTERNALDATE "01-Dec-2026 10:15:27 -0000")'],
    [b'1 (UID 7 INTERNALDATE "01-Dec-2026 25:15:27 +0000")'],
    [b"1 (UID 7 INTERNALDATE NIL)"],
    [b'1 (UID 7 BODY[] "quoted")'],
    [(b"1 (UID 7 BODY[] {6}", b"short"), b")"],
    [(b"1 (UID 7 BODY[] {5}", b"hello")],  # the rest of the line is missing
    [(b"1 (UID 7 BODY[] {5}", b"hello"), b") trailing"],
    [b"1 (UID 7 RFC822.SIZE 4) trailing"],
    [b"1 (UID 7 RFC822.SIZE 4"],
    [b"1 (UID 7  RFC822.SIZE 4)"],
    [b"1 (UID 7 RFC822.SIZE 4x)"],
    [b"1 (UID 7 RFC822.SIZE 4 )"],
    [b"(UID 7 RFC822.SIZE 4)"],
    [(b"1 (UID 7 FLAGS (\\Seen) X-LABEL {3}", b"abc"), b")"],
    [b"1 (UID 7 RFC822.SIZE 4)", "2 (UID 8 RFC822.SIZE 4)"],  # not imaplib's bytes
])
def test_other_shapes_are_declined(data: list[Any]) -> None:
    assert fetched.parse(data) is None
