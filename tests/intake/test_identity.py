"""Nobody acts, or learns, as someone else: end to end against Dovecot and aiosmtpd, plus the From reading.

The attacks of issue 12, replayed through real mail: order data sent where Reply-To points, a
stranger cancelling another customer's order, one victim flooded through forged senders, From
headers that parsers read differently, and the shop's own people answered like customers.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supportd.base.clock import FakeClock
from supportd.intake.identity import PLAIN_FROM, display_name_for_reply, full_reading, read_from, utf8_header

from act.test_confirmations import TOKEN, answer, hook_calls, with_hook
from conftest import OWNER, SUPPORT, World, corpus_path, mail

START = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)  # a Tuesday, within business hours
CHLOE = "Chloe <chloe@example.org>"
MALLORY = "mallory@evil.example"
ORDERS_CSV = """order,email,status,tracking,carrier,tracking_url
77123,chloe@example.org,shipped on Friday,00340434165550001,DHL,https://track.example/00340434165550001
77124,ada@example.org,being packed,,,
"""
TRACKING = "00340434165550001"


def with_orders(world: World, text: str = ORDERS_CSV) -> Path:
    path = world.root / "orders.csv"
    path.write_text(text)
    world.write_config(orders={"csv": "orders.csv"})
    return path


def text_of(message: EmailMessage) -> str:
    return str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def alerts(world: World) -> list[str]:
    return [str(m["Subject"]) for m in world.sent_to(OWNER)]


def raw_mail(from_header: str, body: str, *, return_path: str | None = None, subject: str = "Parcel",
             message_id: str = "<odd@example.org>") -> bytes:
    """A message with a From header exactly as written (no library tidies it up)."""
    envelope = f"Return-Path: <{return_path}>\r\n" if return_path else ""
    return (f"{envelope}From: {from_header}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            f"Message-ID: {message_id}\r\nDate: Tue, 03 Mar 2026 08:59:00 +0000\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


# ---------------------------------------------------------------- the From reading (pure)


@pytest.mark.parametrize("header", [
    "chloe@example.org <mallory@evil.example>",
    "=?utf-8?q?x:chloe@example.org;?= <mallory@evil.example>",
    "<chloe@example.org>@evil.example",
    "chloe@example.org, mallory@evil.example",
    "Chloe <chloe@example.org",
])
def test_from_headers_that_parsers_read_differently_are_not_trusted(header: str) -> None:
    """Each CVE-2023-27043-style From is read, but marked untrusted with a reason."""
    reading = read_from([header])
    assert reading is not None and not reading.trusted and reading.doubt


@pytest.mark.parametrize(("header", "address", "name"), [
    ("Chloe <chloe@example.org>", "chloe@example.org", "Chloe"),
    ('"Lovelace, Ada" <ada@example.org>', "ada@example.org", "Lovelace, Ada"),
    ("=?utf-8?q?Ren=C3=A9?= <rene@example.org>", "rene@example.org", "René"),
    ("jürgen@bücher.example", "jürgen@bücher.example", ""),
    ("x" * 200_000 + " <big@example.org>", "big@example.org", ""),
])
def test_ordinary_from_headers_are_trusted(header: str, address: str, name: str) -> None:
    """Names with commas, encoded words, non-ASCII addresses and a 200 KB name read as one trusted address."""
    reading = read_from([header])
    assert reading is not None and reading.trusted, reading
    assert (reading.email, reading.name) == (address, name)


def test_two_from_headers_are_not_trusted() -> None:
    """A message with two From headers is not taken as either sender."""
    reading = read_from(["chloe@example.org", "mallory@evil.example"])
    assert reading is not None and reading.doubt == "2 From headers"


def test_an_untrusted_from_keeps_the_address_the_envelope_agrees_with() -> None:
    """Only the address the Return-Path names may get a plain acknowledgment."""
    reading = read_from(["chloe@example.org <mallory@evil.example>"], envelope=MALLORY)
    assert reading is not None and reading.email == MALLORY and reading.envelope_agrees


def test_display_names_that_could_mislead_are_left_out_of_our_to() -> None:
    """A huge name or one that looks like an address is dropped; an ordinary one is kept."""
    assert display_name_for_reply("x" * 200_000) == ""
    assert display_name_for_reply("chloe@example.org") == ""
    assert display_name_for_reply("Ada  Lovelace") == "Ada Lovelace"


# ---------------------------------------------------------------- private data goes to its owner only


def test_order_data_never_goes_where_reply_to_points(world: World) -> None:
    """From Chloe, Reply-To mallory: mallory gets nothing; Chloe gets her own order's tracking."""
    with_orders(world)
    world.deliver(mail("Where is my parcel?", sender=CHLOE, headers={"Reply-To": MALLORY}))
    world.once(FakeClock(START))
    assert world.sent_to(MALLORY) == []
    [reply] = world.sent_to("chloe@example.org")
    assert TRACKING in text_of(reply)


def test_reflection_through_reply_to_reaches_nobody(world: World) -> None:
    """Many forged senders with one Reply-To: the victim receives nothing at all."""
    world.write_config(paths={"reward_codes": str(world.root / "codes.txt")})
    (world.root / "codes.txt").write_text("\n".join(f"CODE{n}" for n in range(40)))
    for n in range(12):
        world.deliver(mail("My mug arrived broken.", sender=f"forged{n}@example.net", subject=f"Broken {n}",
                           headers={"Reply-To": "victim@example.com"}))
    world.once(FakeClock(START))
    assert world.sent_to("victim@example.com") == []


def test_a_flood_at_one_address_is_capped_and_the_owner_told_once(world: World) -> None:
    """15 mails all answered at one address: 10 acknowledgments, one notice, then silence; one owner alert."""
    world.write_config(limits={"acks_per_sender_per_day": 10})
    for n in range(15):
        world.deliver(mail(f"Question number {n} about a lamp.", sender="victim@example.com", subject=f"Lamp {n}"))
    world.once(FakeClock(START))
    assert len(world.sent_to("victim@example.com")) == 11
    floods = [s for s in alerts(world) if "too many messages" in s]
    assert len(floods) == 1


# ---------------------------------------------------------------- held actions name their object and its owner


def test_a_stranger_cannot_cancel_another_customers_order(world: World) -> None:
    """mallory asks to cancel Chloe's 77123: nothing held, a kind answer without Chloe's data, the owner told."""
    with_orders(world)
    calls = with_hook(world)
    clock = FakeClock(START)
    world.deliver(mail("Please cancel my order 77123.", sender=MALLORY, subject="Cancel"))
    world.once(clock)
    [reply] = world.sent_to(MALLORY)
    assert not TOKEN.search(str(reply["Subject"]))
    assert "Nothing has been changed" in text_of(reply) and TRACKING not in text_of(reply)
    assert any("not the sender's" in s for s in alerts(world))
    # A "yes" with a made-up reply runs nothing either.
    world.deliver(answer(reply, "Yes, cancel it.", sender=MALLORY))
    clock.advance(minutes=5)
    world.once(clock)
    assert hook_calls(calls) == []
    assert world.sent_to("chloe@example.org") == []


def chloe_asks(world: World, clock: FakeClock, text: str = "Please cancel my order 77123.") -> EmailMessage:
    """Chloe asks to cancel; returns the confirmation request she received."""
    world.deliver(mail(text, sender=CHLOE, subject="Cancel"))
    world.once(clock)
    [confirmation] = [m for m in world.sent_to("chloe@example.org") if TOKEN.search(str(m["Subject"]))]
    return confirmation


def chloe_answers(world: World, clock: FakeClock, confirmation: EmailMessage, text: str) -> None:
    world.deliver(answer(confirmation, text, sender=CHLOE))
    clock.advance(minutes=3)
    world.once(clock)


def test_the_owner_of_the_order_can_still_cancel_it(world: World) -> None:
    """Chloe's own request is held for 77123 and her "yes" runs the hook with her address."""
    with_orders(world)
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = chloe_asks(world, clock)
    assert "77123" in text_of(confirmation)
    chloe_answers(world, clock, confirmation, "Yes, please cancel it.")
    [call] = hook_calls(calls)
    assert call["params"] == {"order_number": "77123", "email": "chloe@example.org"}


def test_a_cancellation_without_a_number_names_the_senders_latest_order(world: World) -> None:
    """"Please cancel my order" from Chloe is held for her latest order, named in the confirmation."""
    with_orders(world)
    with_hook(world)
    assert "77123" in text_of(chloe_asks(world, FakeClock(START), "Please cancel my order."))


def test_the_hook_never_runs_when_the_order_is_no_longer_the_confirmers(world: World) -> None:
    """Held for Chloe, then the source names another owner: her "yes" runs nothing and the owner is told."""
    orders = with_orders(world)
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = chloe_asks(world, clock)
    orders.write_text(ORDERS_CSV.replace("77123,chloe@example.org", "77123,zoe@example.org"))
    chloe_answers(world, clock, confirmation, "Yes.")
    assert hook_calls(calls) == []
    assert any("could not be made" in s for s in alerts(world))


def test_an_unsubscription_is_the_senders_own_whatever_order_it_mentions(world: World) -> None:
    """"Unsubscribe me" is held for the sender even when the mail names someone else's order number."""
    with_orders(world)
    with_hook(world, "unsubscribe")
    world.deliver(mail("Please unsubscribe me from your newsletter. Order 77123 was fine.", sender=MALLORY,
                       subject="Newsletter"))
    world.once(FakeClock(START))
    [confirmation] = [m for m in world.sent_to(MALLORY) if TOKEN.search(str(m["Subject"]))]
    assert TRACKING not in text_of(confirmation)


def test_try_shows_no_held_action_and_no_private_data_for_a_stranger(world: World, tmp_path: Path) -> None:
    """`supportd try --json` for mallory's cancellation: held_action null, no tracking in reply.text."""
    with_orders(world)
    stranger = tmp_path / "stranger.eml"
    stranger.write_bytes(mail("Please cancel my order 77123. Where is it anyway?", sender=MALLORY, subject="Cancel"))
    redirected = tmp_path / "redirected.eml"
    redirected.write_bytes(mail("Where is my parcel?", sender=CHLOE, headers={"Reply-To": MALLORY}))
    result = subprocess.run([sys.executable, "-m", "supportd", "try", "--json", "--config", str(world.config_path),
                             str(stranger), str(redirected)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["held_action"] is None and first["reply"]["to"] == MALLORY
    assert TRACKING not in first["reply"]["text"]
    assert second["reply"]["to"] == "chloe@example.org" and TRACKING in second["reply"]["text"]


# ---------------------------------------------------------------- odd From headers


@pytest.mark.parametrize("header", [
    "chloe@example.org <mallory@evil.example>",
    "=?utf-8?q?x:chloe@example.org;?= <mallory@evil.example>",
    "<chloe@example.org>@evil.example",
])
def test_an_odd_from_is_trusted_for_a_plain_acknowledgment_at_most(world: World, header: str) -> None:
    """Never taken as Chloe: no order data, nothing held; a plain acknowledgment only where the envelope agrees."""
    with_orders(world)
    with_hook(world)
    world.deliver(raw_mail(header, "Where is my order 77123? Please cancel my order 77123.", return_path=MALLORY))
    world.once(FakeClock(START))
    assert world.sent_to("chloe@example.org") == []
    for reply in world.sent_to(MALLORY):
        assert TRACKING not in text_of(reply) and not TOKEN.search(str(reply["Subject"]))
    assert any("cannot be trusted" in s for s in alerts(world))


def test_an_odd_from_without_an_agreeing_envelope_gets_no_answer(world: World) -> None:
    """Two addresses in From and no Return-Path: nobody is answered, the owner is told."""
    world.deliver(raw_mail("chloe@example.org, mallory@evil.example", "Where is my parcel?"))
    world.once(FakeClock(START))
    assert [m for m in world.sent() if OWNER not in str(m["To"])] == []
    assert any("cannot be trusted" in s for s in alerts(world))


# ---------------------------------------------------------------- the shop's own people


def test_the_owners_and_staff_addresses_are_never_answered_as_customers(world: World) -> None:
    """Mail from owner@ or a staff address gets no acknowledgment and opens no customer ticket."""
    world.write_config(shop={"staff_addresses": ["helen@shop.example"]})
    world.deliver(mail("Where is order 77120?", sender=f"Owner <{OWNER}>", subject="Test"))
    world.deliver(mail("My lamp is broken", sender="Helen <helen@shop.example>", subject="Lamp"))
    report = world.once(FakeClock(START))
    assert world.sent() == []
    assert all(plan["skip_reason"].startswith("shop: mail from") for plan in report.plans)
    assert all(plan["ticket"] is None for plan in report.plans)


def test_a_from_that_only_looks_like_the_owners_is_not_the_owners(world: World) -> None:
    """`owner@shop <mallory@evil>` with the owner's envelope is not the owner's mail: untrusted, the owner told."""
    world.deliver(raw_mail(f"{OWNER} <{MALLORY}>", "done", return_path=OWNER))
    report = world.once(FakeClock(START))
    [plan] = report.plans
    assert not (plan["skip_reason"] or "").startswith("shop:")
    assert any("cannot be trusted" in s for s in alerts(world))


def test_a_huge_display_name_is_not_copied_into_our_reply(world: World) -> None:
    """A 200 KB display name: the reply goes to the bare address."""
    world.deliver(raw_mail("x" * 200_000 + " <big@example.org>", "Where is my parcel?"))
    world.once(FakeClock(START))
    [reply] = world.sent_to("big@example.org")
    assert str(reply["To"]) == "big@example.org"


# ---------------------------------------------------------------- non-ASCII addresses (RFC 6530)

JUERGEN = "jürgen@bücher.example"


def test_a_non_ascii_address_is_answered_where_the_server_offers_smtputf8(world: World) -> None:
    """jürgen@bücher.example gets his acknowledgment, To written in UTF-8, over SMTPUTF8."""
    world.deliver(raw_mail(f"=?utf-8?q?J=C3=BCrgen?= <{JUERGEN}>", "Where is my parcel?"))
    world.once(FakeClock(START))
    [received] = [m for m in world.sink.messages if JUERGEN in m.rcpt_tos]
    assert JUERGEN in received.raw.decode("utf-8")
    assert world.sent_to(OWNER) == []


def test_a_non_ascii_address_without_smtputf8_is_set_aside_with_a_reason(world: World) -> None:
    """A server without SMTPUTF8: nothing garbled goes out; the owner is told why and whom to answer."""
    world.sink.stop()
    world.sink.smtputf8 = False
    world.sink.start()
    world.deliver(raw_mail(JUERGEN, "Where is my parcel?"))
    world.once(FakeClock(START))
    assert [m for m in world.sink.messages if OWNER not in m.rcpt_tos] == []
    [alert] = world.sent_to(OWNER)
    assert "SMTPUTF8" in alert.get_content() and JUERGEN in alert.get_content()


@settings(max_examples=200, deadline=None)
@given(st.from_regex(PLAIN_FROM, fullmatch=True), st.sampled_from([None, "", "ada@example.org", "A@B.example"]))
def test_a_plain_from_is_read_as_both_parsers_read_it(value: str, envelope: str | None) -> None:
    """The short cut for a plain From gives exactly what the two parsers and their checks give."""
    assert read_from([value], envelope) == full_reading([value], envelope)


def test_every_corpus_from_is_read_as_both_parsers_read_it() -> None:
    """On every From in the shared corpus, the short cut (where it applies) changes nothing."""
    plain = 0
    files = [p for p in corpus_path().rglob("*") if p.is_file() and p.suffix not in (".md", ".csv", ".jsonl")]
    for path in sorted(files):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
        values = [utf8_header(str(v)) for k, v in msg.raw_items() if k.strip().lower() == "from"]
        plain += bool(values) and PLAIN_FROM.fullmatch(values[0]) is not None
        assert read_from(values, "x@example.org") == full_reading(values, "x@example.org"), path
    assert plain > 100  # the short cut is the common case, not a corner
