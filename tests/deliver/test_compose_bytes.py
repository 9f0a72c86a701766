"""The bytes of a reply, written directly (``email_bytes``), are those the email package writes (``build_email``)."""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import email.utils
import itertools
import random
import zoneinfo
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supportd.deliver import outbox
from supportd.deliver.replies import UTF8_HEADERS, Answering, Draft, Rendered, build_email, email_bytes
from supportd.intake.identity import display_name_for_reply
from supportd.intake.message import Address, parse

from conftest import corpus_path, mail
from planning import offline_context, own_recipient, plan_for

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# Words a customer might put in a name or a subject: quotes, commas, encoded words, non-ASCII, line breaks.
TRICKY = st.sampled_from(["Ada", "Lovelace, Ada", '"Ada"', "O'Brien", "Zoë", "Jürgen Groß", "李雷", "=?utf-8?q?x?=",
                          "a\r\nBcc: evil@attacker.example", "\nX-Injected: yes", "\t", "  ", "(comment)", "<b>",
                          "x" * 90, "ÿ" * 40, "[#1042]", "Re:", ";", "\\", "\x00", "\x7f", "🙂"])
WORDS = st.lists(TRICKY | st.text(max_size=30), max_size=8).map(" ".join)
BODY = st.lists(st.sampled_from(["Hello Zoë,", "", ".", ".dot", "From me", "trailing space ", "tab\t", "=", "x" * 200,
                                 "ü" * 80, "-- ", "a\rb", "€ 20"]) | st.text(max_size=100), max_size=12).map("\n".join)
ASCII_ADDRESS = st.from_regex(r"[a-z0-9._+-]{1,20}@[a-z0-9-]{1,20}\.example", fullmatch=True)
# The owner's shop name (the sender) is the config's, not a customer's.
SHOP_NAMES = st.sampled_from(["", "Example Shop", "Zoë's Läden, Berlin", '"Quoted" Shop', "Shop (Support)", "李店"])
MESSAGE_ID = st.from_regex(r"<[a-z0-9.]{1,30}@[a-z.]{1,20}>", fullmatch=True) | WORDS


@st.composite
def drafts(draw: st.DrawFn) -> Draft:
    """One reply, as ``outbox.compose`` drafts it, with customer text anywhere it can be."""
    text = draw(BODY)
    html = draw(st.none() | BODY.map(lambda body: f"<p>{body}</p>\n"))
    headers = {"Auto-Submitted": draw(st.sampled_from(["auto-replied", "auto-generated"]))}
    if draw(st.booleans()):
        headers["X-Supportd-Ticket"] = str(draw(st.integers(1, 10**9)))
    if draw(st.booleans()):
        headers["X-Supportd-Ref"] = draw(WORDS)
    to_email = draw(ASCII_ADDRESS | st.sampled_from(["jürgen@example.org", "李@example.cn"]))
    return Draft(
        sender=Address(draw(SHOP_NAMES), draw(ASCII_ADDRESS)),
        to=Address(display_name_for_reply(draw(WORDS)), to_email),  # as compose passes it: at most 64 characters
        subject=draw(WORDS),
        rendered=Rendered(text=text.strip() + "\n", html=html),
        message_id=draw(MESSAGE_ID),
        date=dt.datetime(2026, 11, 24, 10, 30, tzinfo=BERLIN) + dt.timedelta(days=draw(st.integers(0, 400))),
        answering=Answering(draw(st.sampled_from(["", "<a@b.example>"]) | WORDS),
                            tuple(draw(st.lists(MESSAGE_ID, max_size=25)))),
        headers=headers,
    )


def by_the_email_package(draft: Draft) -> bytes:
    """What supportd wrote before ``email_bytes``: the message built, then the generator's bytes."""
    msg = build_email(draft)
    return msg.as_bytes() if draft.to.email.isascii() else msg.as_bytes(policy=UTF8_HEADERS)


def both_ways(draft: Draft, seed: int = 0) -> tuple[bytes, bytes]:
    """The reply written directly and by the email package, each with the same random state (the boundary)."""
    random.seed(seed)
    direct = email_bytes(draft)
    random.seed(seed)
    return direct, by_the_email_package(draft)


def header_names(raw: bytes) -> list[str]:
    """The names of the header lines of ``raw``, in order (a continuation line starts with a blank)."""
    block = raw.split(b"\n\n", 1)[0]
    return [line.split(b":", 1)[0].decode() for line in block.split(b"\n") if line and not line[:1].isspace()]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draft=drafts(), seed=st.integers(0, 2**32))
def test_a_reply_is_written_byte_for_byte_as_the_email_package_writes_it(draft: Draft, seed: int) -> None:
    """Names with quotes, commas and line breaks, long and non-ASCII subjects, long lines, HTML: the same bytes."""
    direct, general = both_ways(draft, seed)
    assert direct == general


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draft=drafts())
def test_no_customer_word_adds_a_header(draft: Draft) -> None:
    """Whatever the name, subject or reference holds (CR, LF, 'Bcc:'), the reply has exactly our headers."""
    raw = email_bytes(draft)
    names = header_names(raw)
    expected = ["From", "To", "Subject", "Date", "Message-ID"]
    assert [n for n in names if n not in ("Content-Transfer-Encoding", "MIME-Version", "Content-Type")][:5] == expected
    assert not {n.lower() for n in names} & {"bcc", "cc", "x-injected", "reply-to"}
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert parsed.get_all("To") is not None and len(parsed.get_all("To")) == 1
    assert len(parsed.get_all("Subject") or []) == 1


def test_an_html_reply_has_both_parts_under_a_fresh_boundary() -> None:
    """The text and the HTML come back decoded as rendered; each mail draws its own boundary."""
    draft = Draft(sender=Address("Example Shop", "support@shop.example"), to=Address("Zoë", "zoe@example.org"),
                  subject="Re: Größe [#1042]", rendered=Rendered("Hallo Zoë,\n.\n", "<p>Hallo Zoë</p>\n"),
                  message_id="<sd.ack.1@shop.example>", date=dt.datetime(2026, 11, 24, 10, 30, tzinfo=BERLIN))
    first, second = email_bytes(draft), email_bytes(draft)
    assert first != second  # the boundary
    msg = email.message_from_bytes(first, policy=email.policy.default)
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    assert (plain.get_content(), html.get_content()) == ("Hallo Zoë,\n.\n", "<p>Hallo Zoë</p>\n")
    assert str(msg["Subject"]) == "Re: Größe [#1042]"


def corpus_messages() -> Iterator[bytes]:
    """Every mail file of the shared corpus, then customer mails written from the first texts of its intents set."""
    corpus = corpus_path()
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and "intents" not in path.parts and path.suffix not in (".md", ".csv", ".jsonl", ".txt"):
            yield path.read_bytes()
    with (corpus / "intents" / "dev.csv").open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(itertools.islice(csv.DictReader(handle), 400)):
            sender = SENDERS[number % len(SENDERS)].format(number=number)
            yield mail(row["text"], sender=sender, subject=row["text"][: 20 + number % 90])


SENDERS = ('"Lovelace, Ada" <ada{number}@example.org>', "Zoë O'Brien <zoe{number}@example.org>",
           "=?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <j{number}@example.de>", "customer{number}@example.org")


def test_replies_to_the_corpus_mails_are_written_as_the_email_package_writes_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reply supportd plans for a mail of the shared corpus has the same bytes both ways."""
    replies_seen: list[Draft] = []

    def recording(draft: Draft) -> bytes:
        replies_seen.append(draft)
        return email_bytes(draft)

    monkeypatch.setattr(outbox, "email_bytes", recording)
    for raw in corpus_messages():
        msg = parse(raw)
        address = own_recipient(msg)  # the mail is addressed to us (a shop's own address is ASCII)
        plan_for(offline_context(address if address.isascii() else "support@shop.example"), msg)
    assert len(replies_seen) > 400
    for number, draft in enumerate(replies_seen):
        direct, general = both_ways(draft, number)
        assert direct == general, draft


@settings(max_examples=200, deadline=None)
@given(when=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1),
                         timezones=st.sampled_from([BERLIN, dt.UTC, zoneinfo.ZoneInfo("America/St_Johns")])))
def test_the_date_header_is_the_moment_in_the_shops_zone(when: dt.datetime) -> None:
    """Any moment, microseconds and all, in any zone, is written as the email package writes it (a cache serves
    repeats: the same instant in another zone is another header)."""
    for zone in (BERLIN, dt.UTC, zoneinfo.ZoneInfo("America/St_Johns"), BERLIN):
        local = when.astimezone(zone)
        draft = Draft(sender=Address("Example Shop", "support@shop.example"), to=Address("", "ada@example.org"),
                      subject="Hi", rendered=Rendered("Hi\n", None), message_id="<sd.ack.1@shop.example>",
                      date=local)
        assert f"\nDate: {email.utils.format_datetime(local)}\n".encode() in email_bytes(draft)


def test_reply_to_a_non_ascii_address_keeps_the_thread_ids_as_they_are() -> None:
    """A reply to jörg@ answering long Gmail Message-IDs carries them unencoded, so his mail client threads it."""
    in_reply_to = "<" + "a" * 70 + "@mail.gmail.com>"
    references = tuple(f"<CAB{n}{'x' * 60}@mail.gmail.com>" for n in range(3))
    draft = Draft(sender=Address("Shop", "support@shop.example"), to=Address("Jörg " + "Ü" * 90, "jörg@example.de"),
                  subject="Re: Bestellung", rendered=Rendered("Hallo", None), message_id="<x@shop.example>",
                  date=dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC),
                  answering=Answering(in_reply_to=in_reply_to, references=references))
    raw = email_bytes(draft)
    head = raw.split(b"\n\n", 1)[0]
    as_written = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert "=?" not in as_written["In-Reply-To"] and "=?" not in as_written["References"]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(parsed["In-Reply-To"]).strip() == in_reply_to
    assert str(parsed["References"]).split() == list(references)
    assert "<jörg@example.de>".encode() in head  # the address itself in UTF-8 (RFC 6532)
    assert all(line.strip() for line in head.split(b"\n")), "no empty line inside the header block"
