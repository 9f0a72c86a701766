"""The outbox: "not now" is retried with backoff, "never" is reported once, and a stuck queue reaches the owner."""

from __future__ import annotations

import datetime as dt

from supportd.base.clock import FakeClock
from supportd.state.ledger import Ledger

from conftest import OWNER, World, mail

START = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def outbox_states(world: World) -> list[str]:
    ledger = Ledger.open(world.root / "state", FakeClock(START))
    return sorted(entry["state"] for entry in ledger.find("outbox"))


def test_temporary_refusal_is_retried_with_backoff_and_delivered(world: World) -> None:
    """A 451 is not the end: the reply waits (not sent again at once) and goes out when its retry time comes."""
    clock = FakeClock(START)
    world.write_config(smtp={"retry_first_seconds": 60})
    world.sink.refuse("ada@example.org", 451, "greylisted, try later")
    world.deliver(mail())
    world.once(clock)
    assert world.sink.rcpt_attempts("ada@example.org") == 1
    world.sink.accept("ada@example.org")
    world.once(clock.advance(seconds=30) and clock)  # before the retry time: no new attempt
    assert world.sink.rcpt_attempts("ada@example.org") == 1
    clock.advance(seconds=31)
    world.once(clock)
    assert len(world.sent_to("ada@example.org")) == 1
    assert world.flags()[1] == (b"$SupportdHandled",)


def test_backoff_doubles_between_tries(world: World) -> None:
    """Each further 'not now' waits twice as long (1 min, 2 min, 4 min...), never a storm."""
    clock = FakeClock(START)
    world.write_config(smtp={"retry_first_seconds": 60})
    world.sink.refuse("ada@example.org", 421, "busy")
    world.deliver(mail())
    attempts_at = []
    for _ in range(60):  # an hour, minute by minute
        before = world.sink.rcpt_attempts("ada@example.org")
        world.once(clock)
        if world.sink.rcpt_attempts("ada@example.org") > before:
            attempts_at.append(round((clock.now() - START).total_seconds() / 60))
        clock.advance(minutes=1)
    assert attempts_at[:5] == [0, 1, 3, 7, 15]
    assert len(attempts_at) <= 7


def test_permanent_refusal_is_recorded_reported_and_never_retried(world: World) -> None:
    """A 550 is final: no further tries, the message is finished, and the owner hears about it once."""
    clock = FakeClock(START)
    world.sink.refuse("ada@example.org", 550, "no such user")
    world.deliver(mail())
    for _ in range(5):
        world.once(clock)
        clock.advance(hours=1)
    assert world.sink.rcpt_attempts("ada@example.org") == 1
    alerts = world.sent_to(OWNER)
    assert len(alerts) == 1
    assert "refused for good" in alerts[0].get_body(preferencelist=("plain",)).get_content()
    assert b"$SupportdHandled" in world.flags()[1]
    assert outbox_states(world) == []


def test_reply_stuck_for_hours_alerts_the_owner_once(world: World) -> None:
    """A reply that the server keeps refusing for now is still queued; after 2 hours the owner is told, once."""
    clock = FakeClock(START)
    world.write_config(smtp={"retry_first_seconds": 60, "stuck_alert_hours": 2})
    world.sink.refuse("ada@example.org", 451, "mailbox busy")
    world.deliver(mail())
    for _ in range(8):
        world.once(clock)
        clock.advance(minutes=30)
    alerts = world.sent_to(OWNER)
    assert len(alerts) == 1
    assert "waiting for the mail server" in alerts[0].get_body(preferencelist=("plain",)).get_content()
    assert outbox_states(world) == ["retry"]
    assert b"$SupportdHandled" not in world.flags()[1]  # not finished until the reply is out


def test_reply_given_up_after_the_retry_window_is_reported(world: World) -> None:
    """After smtp.retry_hours of 'not now', supportd stops trying and tells the owner to answer another way."""
    clock = FakeClock(START)
    world.write_config(smtp={"retry_first_seconds": 60, "retry_hours": 3, "stuck_alert_hours": 100})
    world.sink.refuse("ada@example.org", 451, "mailbox busy")
    world.deliver(mail())
    for _ in range(10):
        world.once(clock)
        clock.advance(hours=1)
    alerts = world.sent_to(OWNER)
    assert len(alerts) == 1 and "another way" in alerts[0].get_body(preferencelist=("plain",)).get_content()
    assert b"$SupportdHandled" in world.flags()[1]


def test_replies_are_dated_in_the_shops_time_zone(world: World) -> None:
    """The Date header carries the shop's offset (+0100 in a Berlin winter), as a mail client writes it."""
    world.write_config(hours={"timezone": "Europe/Berlin"})
    world.deliver(mail())
    world.once(FakeClock(START))
    [reply] = world.sent_to("ada@example.org")
    assert reply["Date"] == "Mon, 23 Nov 2026 11:00:00 +0100"
