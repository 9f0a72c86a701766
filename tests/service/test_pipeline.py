"""The message's way through supportd, against a real Dovecot and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import email
import json
import zoneinfo

import pytest

from supportd.service.pipeline import waited_before_pickup
from supportd.state.ledger import History

from conftest import OWNER, SUPPORT, World, mail


def test_customer_email_gets_a_threaded_acknowledgment(world: World) -> None:
    """An email appended to INBOX comes back at the SMTP server as a threaded reply with a ticket."""
    world.deliver(mail("Hi, my order 77120 has not arrived yet.", message_id="<q1@example.org>",
                       subject="Where is my order?"))
    report = world.once()
    assert report.acknowledged == 1
    [reply] = world.sent_to("ada@example.org")
    assert reply["In-Reply-To"] == "<q1@example.org>"
    assert "<q1@example.org>" in reply["References"]
    assert reply["Subject"].startswith("Re: Where is my order? [#")
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"
    assert reply["From"].addresses[0].addr_spec == SUPPORT
    assert "Example Shop · +49 30 1234567" in reply.get_content()


def test_second_pass_sends_nothing_new(world: World) -> None:
    """Running supportd again finds nothing new: one customer email, one acknowledgment."""
    world.deliver(mail())
    world.once()
    world.once()
    assert len(world.sent_to("ada@example.org")) == 1


def test_message_stays_on_the_server_unread_and_marked_handled(world: World) -> None:
    """Nothing is deleted or marked read: the owner still sees the mail as new, with our keyword."""
    uid = world.deliver(mail())
    world.once()
    flags = world.flags()
    assert list(flags) == [uid]
    assert b"\\Seen" not in flags[uid]
    assert b"\\Deleted" not in flags[uid]
    assert b"$SupportdHandled" in flags[uid]


def test_every_reply_is_copied_to_sent(world: World) -> None:
    """The owner sees the conversation in any mail client: our reply is in the Sent folder."""
    world.deliver(mail())
    world.once()
    client = world.imap()
    client.select_folder("Sent", readonly=True)
    [uid] = client.search("ALL")
    copy = email.message_from_bytes(client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"])
    client.logout()
    assert copy["Message-ID"] == world.sent()[0]["Message-ID"]


def test_handled_message_moves_when_configured(world: World) -> None:
    """With move_handled_to, handled mail is moved (never deleted) and keeps its keyword."""
    world.write_config(imap={"move_handled_to": "Handled"})
    world.deliver(mail())
    world.once()
    assert world.count("INBOX") == 0
    assert world.count("Handled") == 1


def test_history_records_the_decision(world: World) -> None:
    """What was decided is kept for the digest: intent, rule and ticket, without the customer's words."""
    world.deliver(mail("The vase arrived broken.", subject="Broken vase"))
    world.once()
    records = [r for r in History(world.root / "state" / "history")._all("0000", "9999")
               if r["type"] == "message"]
    assert len(records) == 1
    assert records[0]["primary_intent"] == "defect"
    assert records[0]["rule"] == "broken-or-damaged"
    assert "broken" not in json.dumps(records[0]).lower().replace("broken-or-damaged", "")


def test_owner_is_not_acknowledged_for_robot_mail(world: World) -> None:
    """An out-of-office reply gets nothing back, so no loop can start."""
    world.deliver(mail("I am out of the office until Monday.", subject="Automatic reply: Your order",
                       headers={"Auto-Submitted": "auto-replied"}))
    report = world.once()
    assert report.handled == 1
    assert world.sent() == []
    assert OWNER not in [r for m in world.sink.messages for r in m.rcpt_tos]


def test_message_that_fails_three_times_is_quarantined_and_the_queue_goes_on(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An exception while handling one message: retried, set aside after 3 attempts, the owner told; others answered."""
    import supportd.service.pipeline

    real_plan = supportd.service.pipeline.plan_message

    def plan_or_fail(ctx, msg, key, reading=None):  # type: ignore[no-untyped-def]
        if "BROKEN" in msg.subject:
            raise ValueError("a bug in handling this one")
        return real_plan(ctx, msg, key, reading)

    monkeypatch.setattr(supportd.service.pipeline, "plan_message", plan_or_fail)
    broken = world.deliver(mail("x", subject="BROKEN thing", sender="b@example.org"))
    world.deliver(mail("Where is my order?", sender="c@example.org"))
    for _ in range(4):
        world.once()
    flags = world.flags()
    assert b"$SupportdQuarantined" in flags[broken] and b"$SupportdHandled" not in flags[broken]
    assert len(world.sent_to("c@example.org")) == 1
    [alert] = world.sent_to(OWNER)
    assert "3 times" in alert.get_body(preferencelist=("plain",)).get_content()
    world.once()
    assert len(world.sent_to(OWNER)) == 1  # set aside for good: no second alert, no retry


def test_oversize_message_is_quarantined_at_once(world: World) -> None:
    """Mail larger than limits.max_message_bytes is not fetched; it is set aside for the owner, still in the box."""
    world.write_config(limits={"max_message_bytes": 5000})
    big = world.deliver(mail("x" * 20000, sender="big@example.org"))
    small = world.deliver(mail("Where is my order?", sender="small@example.org"))
    world.once()
    flags = world.flags()
    assert b"$SupportdQuarantined" in flags[big]
    assert b"$SupportdHandled" in flags[small]
    assert world.sent_to("big@example.org") == []
    assert "larger than" in world.sent_to(OWNER)[0].get_body(preferencelist=("plain",)).get_content()


BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NINE = dt.datetime(2026, 3, 3, 9, tzinfo=BERLIN)


@pytest.mark.parametrize(("arrived", "look_before", "waited"), [
    (NINE - dt.timedelta(hours=5), NINE - dt.timedelta(hours=6), 5 * 3600.0),  # down all afternoon
    (NINE - dt.timedelta(days=400), NINE - dt.timedelta(minutes=2), 120.0),  # an old mail moved in
    (NINE + dt.timedelta(seconds=30), NINE - dt.timedelta(minutes=1), 0.0),  # the server's clock is ahead
    (NINE - dt.timedelta(hours=5), None, 0.0),  # already there before supportd's first look
    (None, NINE - dt.timedelta(minutes=1), 0.0),  # the server told no arrival time
])
def test_wait_before_pickup_counts_only_what_supportd_could_have_answered(
        arrived: dt.datetime | None, look_before: dt.datetime | None, waited: float) -> None:
    assert waited_before_pickup(NINE, arrived, look_before) == waited


def test_a_lost_connection_while_replies_are_in_flight_loses_none_and_sends_none_twice(
        world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A batch's replies go out while the next batch is read; when IMAP drops then, the pass fails, and the
    next pass answers everyone who was not answered yet, each customer exactly once."""
    from supportd.intake.inbox import ConnectionLost, Mailbox

    world.sections["limits"] = {"batch_size": 4, "read_ahead_processes": 0}
    senders = [f"lost{n}@example.org" for n in range(10)]
    for sender in senders:
        world.deliver(mail(f"Where is my parcel, {sender}?", sender=sender, subject="Parcel"))
    real_stored = Mailbox.stored
    calls = []

    def stored_then_lost(self, uids):  # type: ignore[no-untyped-def]
        calls.append(len(uids))
        if len(calls) == 2:
            raise ConnectionLost("the IMAP server went away")
        return real_stored(self, uids)

    monkeypatch.setattr(Mailbox, "stored", stored_then_lost)
    with pytest.raises(ConnectionLost):
        world.once()
    monkeypatch.setattr(Mailbox, "stored", real_stored)
    world.once()
    world.once()
    assert sorted(r for m in world.sink.messages for r in m.rcpt_tos) == sorted(senders)
