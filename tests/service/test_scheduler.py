"""Work on the clock: overdue tickets chased once, and no failing job keeping the others from running."""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage

import pytest

from supportd.act import tickets
from supportd.base.clock import FakeClock

from conftest import OWNER, World, mail

START = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)  # Tuesday 09:00; an answer is due 17:00 (8 business hours)
ADA = "Ada Lovelace <ada@example.org>"


def overdue_alerts(world: World) -> list[EmailMessage]:
    return [m for m in world.sent_to(OWNER) if "overdue" in str(m["Subject"]) and "your week" not in str(m["Subject"])]


def open_defect(world: World, clock: FakeClock) -> EmailMessage:
    world.write_config()
    world.deliver(mail("The lamp does not work.", sender=ADA, subject="Lamp"))
    world.once(clock)
    [ack] = world.sent_to("ada@example.org")
    return ack


def test_overdue_ticket_alerts_exactly_once(world: World) -> None:
    """Past its due time a ticket alerts the owner once, however often the job runs or supportd restarts."""
    clock = FakeClock(START)
    open_defect(world, clock)
    clock.set(START + dt.timedelta(hours=7, minutes=59))
    world.once(clock)
    assert overdue_alerts(world) == []
    daemon = world.daemon(clock)
    for minute in range(5):
        clock.set(START + dt.timedelta(hours=8, minutes=1 + minute))
        daemon.jobs.run_all()
    for hour in range(3):
        clock.advance(hours=hour + 1)
        world.once(clock)  # a restart each time
    [alert] = overdue_alerts(world)
    assert str(alert["Subject"]).strip() == "[supportd] a promised answer is overdue (ticket 1001: Lamp)"
    body = alert.get_content()
    assert "supportd resolve 1001" in body
    assert "today 17:00" in body  # when it was promised, as a person says it
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", body)


def test_reopened_ticket_that_goes_overdue_again_alerts_again(world: World) -> None:
    """Resolved, reopened by the customer, and forgotten again: a new promise broken is a new alert."""
    from supportd.service import cli

    clock = FakeClock(START)
    open_defect(world, clock)
    clock.set(START + dt.timedelta(hours=9))
    world.once(clock)
    assert len(overdue_alerts(world)) == 1
    assert cli.main(["resolve", "1001", "--config", str(world.config_path)]) == 0
    sorted_mail = world.sent_to("ada@example.org")[-1]
    world.deliver(mail("It still does not work.", sender=ADA, subject=f"Re: {sorted_mail['Subject']}",
                       headers={"In-Reply-To": sorted_mail["Message-ID"]}))
    clock.set(START + dt.timedelta(days=1))
    world.once(clock)
    assert len(overdue_alerts(world)) == 1  # reopened, due again tomorrow
    clock.set(START + dt.timedelta(days=2))
    world.once(clock)
    world.once(clock)
    assert len(overdue_alerts(world)) == 2


def test_a_failing_job_does_not_stop_the_digest(world: World, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """If chasing overdue tickets breaks, the weekly digest still goes out, and the failure is logged."""
    clock = FakeClock(START)
    open_defect(world, clock)

    def broken(ctx: object) -> list[object]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tickets, "overdue", broken)
    clock.set(dt.datetime(2026, 3, 9, 8, 30, tzinfo=dt.UTC))  # Monday after 08:00 (UTC by default)
    world.once(clock)
    assert [m for m in world.sent_to(OWNER) if "your week" in str(m["Subject"])]
    assert "scheduled job overdue tickets failed" in caplog.text
