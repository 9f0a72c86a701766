"""The owner never needs a shell: replies from a mail client count, and alerts can be answered.

Against a real Dovecot and a real SMTP server. The owner's mail is filed as real clients file it:
a reply in the Sent folder with In-Reply-To/References, quoted the way Gmail, Outlook, Apple Mail
and mutt quote; a Bcc to the support address; a "done" typed above a quoted alert.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import email.utils
import io
import json
import re
from email.message import EmailMessage
from typing import Any

import pytest

from supportd.base.clock import FakeClock
from supportd.service import cli

from conftest import OWNER, SUPPORT, World, mail

# A Tuesday 09:00 two or three weeks back (an answer is due 17:00): `supportd tickets` reads the real
# clock, and shows tickets closed in the last 90 days.
_TODAY = dt.datetime.now(dt.UTC).date()
START = dt.datetime.combine(_TODAY - dt.timedelta(days=(_TODAY.weekday() - 1) % 7 + 14), dt.time(9, 0), dt.UTC)
ADA = "Ada Lovelace <ada@example.org>"
QUOTES = {
    # How each client files a reply: its Message-ID, the threading headers it writes, its quote.
    "gmail": ("<CAF=q7Zx{n}@mail.gmail.com>", True,
              "On Tue, 3 Mar 2026 at 09:00, Ada Lovelace <ada@example.org> wrote:\n\n{quoted}"),
    "outlook": ("<AM0PR07MB{n}.eurprd07.prod.outlook.com>", False,
                "________________________________\nFrom: Ada Lovelace <ada@example.org>\n"
                "Sent: Tuesday, March 3, 2026 9:00 AM\nTo: support@shop.example\nSubject: {subject}\n\n{plain}"),
    "apple": ("<5F0C2A9E-1B7D-4C3A-{n}@shop.example>", True,
              "> On 3 Mar 2026, at 09:00, Ada Lovelace <ada@example.org> wrote:\n>\n{quoted}"),
    "mutt": ("<20260303{n}.GA1234@shop.example>", True,
             "* Ada Lovelace <ada@example.org> [2026-03-03 09:00]:\n{quoted}"),
}


def run(world: World, *args: str) -> int:
    return cli.main([*args, "--config", str(world.config_path)])


def client_mail(*, client: str, sender: str, to: str, subject: str, text: str, answers: EmailMessage | bytes,
                written: dt.datetime, n: int = 1, headers: dict[str, str] | None = None) -> bytes:
    """A reply as ``client`` writes it: its own Message-ID, threading headers, and the answered mail quoted."""
    template_id, full_references, quote = QUOTES[client]
    original = answers if isinstance(answers, EmailMessage) else email.message_from_bytes(
        answers, policy=email.policy.default)
    body = original.get_body(("plain",))
    plain = str(body.get_content() if body is not None else "").strip()
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(written)
    msg["Message-ID"] = template_id.format(n=f"{n:04d}")
    msg["In-Reply-To"] = original["Message-ID"]
    references = f"{original.get('References', '')} {original['Message-ID']}".strip()
    msg["References"] = references if full_references else original["Message-ID"]
    if client == "mutt":
        msg["User-Agent"] = "NeoMutt/20220429"
    for name, value in (headers or {}).items():
        msg[name] = value
    quoted = "\n".join(f"> {line}" for line in plain.splitlines())
    msg.set_content(f"{text}\n\n" + quote.format(quoted=quoted, plain=plain, subject=original["Subject"]) + "\n")
    return msg.as_bytes()


def customer_writes(world: World, clock: FakeClock, text: str = "The lamp I bought does not work.",
                    subject: str = "Broken lamp", sender: str = ADA) -> bytes:
    raw = mail(text, sender=sender, subject=subject, message_id=f"<{abs(hash(text))}@example.org>")
    world.deliver(raw)
    world.once(clock)
    return raw


def tickets_json(world: World, *extra: str) -> dict[int, dict[str, Any]]:
    """`supportd tickets --json`, as the owner's script reads it: one object per line, by number."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert run(world, "tickets", "--json", *extra) == 0
    rows = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return {t["number"]: t for t in rows}


def alerts(world: World) -> list[EmailMessage]:
    """supportd's alerts to the owner (not the digest, not its answers to the owner's commands)."""
    return [m for m in world.sent_to(OWNER) if str(m["Subject"]).strip().startswith("[supportd]")
            and "your week" not in str(m["Subject"])]


def owner_replies_in_sent(world: World, customer_mail: bytes, written: dt.datetime, client: str = "mutt",
                          text: str = "Sorry about the lamp! A new one goes out today.") -> bytes:
    """The owner answers the customer from the support mailbox; the client files the reply in Sent."""
    reply = client_mail(client=client, sender=f"Example Shop <{SUPPORT}>", to=ADA, subject="Re: Broken lamp",
                        text=text, answers=customer_mail, written=written)
    world.deliver(reply, folder="Sent")
    return reply


def test_reply_in_sent_marks_the_ticket_answered_and_no_overdue_alert_comes(world: World) -> None:
    """The owner answers from mutt at 09:40 (filed in Sent): the ticket is answered then, and never overdue."""
    world.write_config()
    clock = FakeClock(START)
    asked = customer_writes(world, clock)
    clock.set(START + dt.timedelta(minutes=45))
    owner_replies_in_sent(world, asked, START + dt.timedelta(minutes=40))
    sent_before = world.flags("Sent")
    world.once(clock)
    clock.set(START + dt.timedelta(days=2))
    world.once(clock)
    assert alerts(world) == []
    [ticket] = tickets_json(world).values()
    assert ticket["state"] == "answered" and ticket["due"] is None
    assert ticket["last_person_reply"].startswith(f"{START.date()}T09:40")
    assert world.flags("Sent") == sent_before  # the Sent folder is read, never changed
    assert len(world.sent_to("ada@example.org")) == 1  # just the first acknowledgment


@pytest.mark.parametrize("client", sorted(QUOTES))
def test_customer_answer_to_the_owners_reply_joins_the_ticket_without_an_acknowledgment(
        world: World, client: str) -> None:
    """Ada answers the owner's personal reply (from any mail client): same ticket, open again, no new ack."""
    world.write_config()
    clock = FakeClock(START)
    asked = customer_writes(world, clock)
    clock.advance(minutes=30)
    reply = owner_replies_in_sent(world, asked, clock.now(), client=client)
    world.once(clock)
    clock.advance(minutes=30)
    answer = client_mail(client=client, sender=ADA, to=SUPPORT, subject="Re: Re: Broken lamp",
                         text="Thank you! Should I send the old one back?", answers=reply,
                         written=clock.now(), n=2)
    world.deliver(answer)
    report = world.once(clock)
    assert len(world.sent_to("ada@example.org")) == 1
    [plan] = report.plans
    assert plan["ticket"] == 1001 and plan["skip_reason"].startswith("follow-up")
    tickets = tickets_json(world)
    assert list(tickets) == [1001] and tickets[1001]["due"]  # due again: a person owes an answer
    assert tickets[1001]["state"] in ("open", "overdue")  # (`supportd tickets` reads the real clock)


def test_a_bcc_of_the_owners_reply_counts_and_gets_no_acknowledgment(world: World) -> None:
    """The owner answers from owner@ with a Bcc to the support address: the ticket is answered, nobody is acked."""
    world.write_config()
    clock = FakeClock(START)
    asked = customer_writes(world, clock)
    clock.advance(minutes=20)
    bcc = client_mail(client="gmail", sender=f"Sam <{OWNER}>", to=ADA, subject="Re: Broken lamp",
                      text="Hi Ada, a new lamp is on its way.", answers=asked, written=clock.now(),
                      headers={"Delivered-To": SUPPORT})
    world.deliver(bcc)
    report = world.once(clock)
    [plan] = report.plans
    assert plan["reply"] is None and plan["skip_reason"].startswith("shop:")
    assert world.sent_to(OWNER) == [] and len(world.sent_to("ada@example.org")) == 1
    assert tickets_json(world)[1001]["state"] == "answered"


def test_staff_reply_counts_like_the_owners(world: World) -> None:
    """A configured staff address answering by Bcc marks the ticket answered; it is never a customer."""
    world.write_config(shop={"staff_addresses": ["kim@shop.example"]})
    clock = FakeClock(START)
    asked = customer_writes(world, clock)
    bcc = client_mail(client="apple", sender="Kim <kim@shop.example>", to=ADA, subject="Re: Broken lamp",
                      text="Hello Ada, I am sending a new lamp.", answers=asked, written=clock.now(),
                      headers={"Cc": SUPPORT})
    world.deliver(bcc)
    world.once(clock)
    assert world.sent_to("kim@shop.example") == []
    assert tickets_json(world)[1001]["state"] == "answered"


def test_digest_counts_promises_kept_and_late_from_the_real_reply_time(world: World) -> None:
    """One reply before the due time and one after it: the digest says 1 kept, 1 late."""
    world.write_config(digest={"weekday": "monday", "time": "08:00", "timezone": "UTC"})
    clock = FakeClock(START)
    lamp = customer_writes(world, clock)
    vase = customer_writes(world, clock, "The vase I bought arrived broken.", "Broken vase",
                           "Bea <bea@example.org>")
    owner_replies_in_sent(world, lamp, START + dt.timedelta(hours=2))
    clock.set(START + dt.timedelta(hours=3))
    world.once(clock)
    clock.set(START + dt.timedelta(days=1, hours=1))
    late = client_mail(client="outlook", sender=SUPPORT, to="bea@example.org", subject="RE: Broken vase",
                       text="Sorry for the wait, Bea.", answers=vase, written=START + dt.timedelta(days=1), n=2)
    world.deliver(late, folder="Sent")
    world.once(clock)
    clock.set(START + dt.timedelta(days=6, hours=-1, minutes=1))  # Monday 08:01
    world.once(clock)
    [digest] = [m for m in world.sent_to(OWNER) if "your week" in str(m["Subject"])]
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Promised answers: 1 kept, 1 late" in text
    assert "#1002 Broken vase" in text and "16 h late" in text


# ---------------------------------------------------------------- answering supportd's alerts


def overdue_alert(world: World, clock: FakeClock) -> EmailMessage:
    world.write_config()
    customer_writes(world, clock)
    clock.set(START + dt.timedelta(hours=9))
    world.once(clock)
    [alert] = alerts(world)
    assert "overdue" in str(alert["Subject"])
    return alert


def owner_answers(world: World, alert: EmailMessage, text: str, clock: FakeClock, sender: str = f"Sam <{OWNER}>",
                  client: str = "apple", n: int = 1) -> dict[str, Any]:
    world.deliver(client_mail(client=client, sender=sender, to=SUPPORT, subject=f"Re: {alert['Subject']}",
                              text=text, answers=alert, written=clock.now(), n=n))
    report = world.once(clock)
    [plan] = report.plans
    return plan


def test_done_in_reply_to_an_alert_closes_the_ticket_once_and_confirms(world: World) -> None:
    """'done' above the quoted alert closes the ticket and tells the owner so; a second 'done' changes nothing."""
    clock = FakeClock(START)
    alert = overdue_alert(world, clock)
    plan = owner_answers(world, alert, "Done, I called her.", clock)
    assert plan["reply"] is None and plan["ticket"] == 1001
    assert tickets_json(world, "--all")[1001]["state"] == "closed"
    confirmation = world.sent_to(OWNER)[-1]
    assert confirmation["In-Reply-To"] and "Closed ticket 1001" in confirmation.get_content()
    assert len(world.sent_to("ada@example.org")) == 1  # the customer is not written to again
    owner_answers(world, alert, "done", clock, n=2)
    assert "already closed" in world.sent_to(OWNER)[-1].get_content()
    assert tickets_json(world) == {}


def test_snooze_moves_the_due_time_and_alerts_again_when_it_passes(world: World) -> None:
    """'snooze 2 days': no alert until then; when that passes too, one new alert."""
    clock = FakeClock(START)
    alert = overdue_alert(world, clock)
    owner_answers(world, alert, "snooze 2 days", clock, client="gmail")
    ticket = tickets_json(world)[1001]
    assert ticket["due"].startswith(f"{START.date() + dt.timedelta(days=2)}T18:00")
    assert "is due" in world.sent_to(OWNER)[-1].get_content()
    clock.set(START + dt.timedelta(days=2, hours=8))
    world.once(clock)
    assert len(alerts(world)) == 1
    clock.set(START + dt.timedelta(days=2, hours=10))
    world.once(clock)
    assert [str(a["Subject"]).count("overdue") for a in alerts(world)] == [1, 1]


def test_words_supportd_does_not_understand_change_nothing_and_say_so(world: World) -> None:
    """'what is this?' in reply to an alert: nothing changes, and the owner is told what it understands."""
    clock = FakeClock(START)
    alert = overdue_alert(world, clock)
    owner_answers(world, alert, "what is this about?", clock)
    answer = world.sent_to(OWNER)[-1].get_content()
    assert "did not understand" in answer and "snooze 2 days" in answer
    assert tickets_json(world)[1001]["state"] == "overdue"


def test_an_answer_to_an_alert_from_another_address_is_refused_and_shown(world: World) -> None:
    """A forwarded alert answered 'done' by someone else: nothing changes, no answer; the owner sees it."""
    clock = FakeClock(START)
    alert = overdue_alert(world, clock)
    plan = owner_answers(world, alert, "done", clock, sender="Mallory <mallory@example.net>")
    assert "refused" in plan["skip_reason"]
    assert world.sent_to("mallory@example.net") == []
    assert tickets_json(world)[1001]["state"] == "overdue"
    assert "another address" in str(alerts(world)[-1]["Subject"])


def test_done_from_the_owner_without_a_signed_alert_is_no_command(world: World) -> None:
    """From: owner, 'done', in reply to an ID supportd never signed: nothing changes, no answer, no ticket."""
    clock = FakeClock(START)
    overdue_alert(world, clock)
    forged = mail("done", sender=OWNER, subject="Re: [supportd] a promised answer is overdue (ticket 1001)",
                  headers={"In-Reply-To": "<sd.owner.1001.000000000000.0000000000000000@shop.example>"})
    world.deliver(forged)
    [plan] = world.once(clock).plans
    assert plan["skip_reason"].startswith("shop:") and plan["reply"] is None
    assert tickets_json(world)[1001]["state"] == "overdue"
    assert not any("Closed" in m.get_content() for m in world.sent_to(OWNER))


def test_done_on_a_change_made_by_hand_tells_the_customer(world: World) -> None:
    """No hook for cancellations: the owner gets 'please cancel', does it, replies 'done'; Ada hears it is done."""
    world.write_config()
    clock = FakeClock(START)
    customer_writes(world, clock, "Please cancel my order 77120.", "Cancel my order")
    [request] = world.sent_to("ada@example.org")
    world.deliver(client_mail(client="gmail", sender=ADA, to=SUPPORT, subject=f"Re: {request['Subject']}",
                              text="Yes, cancel it.", answers=request, written=clock.now(), n=3))
    world.once(clock)
    [please] = [m for m in world.sent_to(OWNER) if "please cancel" in str(m["Subject"])]
    owner_answers(world, please, "done", clock, client="mutt")
    told = world.sent_to("ada@example.org")[-1].get_content()
    assert "cancelled order 77120" in told
    assert tickets_json(world, "--all")[1001]["state"] == "closed"
    assert "Told ada@example.org" in world.sent_to(OWNER)[-1].get_content()


# ---------------------------------------------------------------- repeat complaints


def test_repeat_complaint_joins_its_ticket_with_one_alert_and_no_second_reward(world: World) -> None:
    """'Third time writing!!!' with the ticket number: joins it; no second ack or code; one alert naming both causes."""
    codes = world.root / "codes.txt"
    codes.write_text("THANKS-1\nTHANKS-2\n")
    world.write_config(paths={"reward_codes": str(codes)})
    clock = FakeClock(START)
    customer_writes(world, clock, "My mug arrived broken.", "Broken mug")
    [ack] = world.sent_to("ada@example.org")
    assert "THANKS-1" in ack.get_content()
    clock.advance(hours=3)
    world.deliver(mail("This is my third time writing about ticket #1001!!! The mug arrived broken. "
                       "Unacceptable!!!", sender=ADA, subject="Still no answer"))
    world.once(clock)
    assert len(world.sent_to("ada@example.org")) == 1
    [alert] = alerts(world)
    assert "upset" in str(alert["Subject"]) and "writing again" in str(alert["Subject"])
    assert list(tickets_json(world)) == [1001]


def test_repeat_complaint_without_a_number_joins_the_customers_ticket(world: World) -> None:
    """'I wrote before and nobody answered' from the same address, no tag: it joins her open ticket."""
    world.write_config()
    clock = FakeClock(START)
    customer_writes(world, clock, "My mug arrived broken.", "Broken mug")
    clock.advance(hours=3)
    world.deliver(mail("I already wrote to you about this and nobody answered.", sender=ADA, subject="Hello?"))
    world.once(clock)
    assert len(world.sent_to("ada@example.org")) == 1
    assert list(tickets_json(world)) == [1001]


# ---------------------------------------------------------------- supportd tickets


def test_tickets_json_and_the_table_show_each_state(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """open, overdue, answered and waiting tickets, as JSON lines and in the table; closed ones with --all."""
    world.write_config()
    clock = FakeClock(START)
    customer_writes(world, clock, "The lamp does not work.", "Lamp", "old@example.org")
    clock.set(START + dt.timedelta(hours=10))
    asked = customer_writes(world, clock, "The vase arrived broken.", "Vase", "Ada <ada@example.org>")
    customer_writes(world, clock, "Please cancel my order 77120.", "Cancel", "cy@example.org")
    customer_writes(world, clock, "The plate is chipped.", "Plate", "dan@example.org")
    world.deliver(client_mail(client="mutt", sender=SUPPORT, to="ada@example.org", subject="Re: Vase",
                              text="A new vase is coming.", answers=asked, written=clock.now()), folder="Sent")
    world.once(clock)
    run(world, "resolve", "1004", "--quiet")
    states = {t["subject"]: t["state"] for t in tickets_json(world).values()}
    assert states == {"Lamp": "overdue", "Vase": "answered", "Cancel": "waiting"}
    every = tickets_json(world, "--all")
    assert every[1004]["state"] == "closed"
    for ticket in every.values():
        assert set(ticket) >= {"number", "state", "customer", "subject", "due", "last_person_reply"}
        for key in ("due", "last_person_reply"):
            assert ticket[key] is None or dt.datetime.fromisoformat(ticket[key]).tzinfo is not None
    capsys.readouterr()
    run(world, "tickets")
    table = capsys.readouterr().out.splitlines()
    shown = {re.split(r"\s+", line)[0]: re.split(r"\s+", line)[1] for line in table}
    assert shown == {"#1001": "OVERDUE", "#1002": "answered", "#1003": "waiting"}


def test_a_ticket_answered_by_an_faq_waits_for_the_customer(world: World) -> None:
    """An FAQ question answered at once: `supportd tickets --json` shows the ticket waiting, with no due time."""
    from decide.test_faq import faq_answer  # the default rules with every FAQ answer written

    faq_answer(world, "Which payment methods do you accept?", "Payment")
    [ticket] = tickets_json(world).values()
    assert ticket["state"] == "waiting" and ticket["due"] is None
