"""Business hours: the 'we will write back by Monday 10:00' in every reply is honest."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from supportd.base.config import HoursConfig
from supportd.decide.hours import add_business_hours, describe_eta, due_time

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
SHOP = HoursConfig(timezone="Europe/Berlin", days=(0, 1, 2, 3, 4), opens=(10, 0), closes=(18, 0),
                   holidays=frozenset({dt.date(2026, 12, 24), dt.date(2026, 12, 25), dt.date(2026, 12, 31)}),
                   answer_within_hours=4)


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def eta(received: dt.datetime, hours: HoursConfig = SHOP) -> str:
    return describe_eta(due_time(received, hours), received, hours)


def test_mail_in_the_morning_is_answered_today() -> None:
    """Tuesday 11:00 plus four open hours is Tuesday 15:00: 'today 15:00'."""
    assert due_time(berlin(2026, 11, 24, 11, 0), SHOP) == berlin(2026, 11, 24, 15, 0)
    assert eta(berlin(2026, 11, 24, 11, 0)) == "today 15:00"


def test_mail_before_opening_counts_from_opening() -> None:
    """Tuesday 07:00: the clock starts at 10:00, so 'today 14:00'."""
    assert eta(berlin(2026, 11, 24, 7, 0)) == "today 14:00"


def test_mail_late_in_the_day_runs_into_tomorrow() -> None:
    """Tuesday 16:30: 1.5 hours today, 2.5 tomorrow: 'tomorrow 12:30'."""
    assert eta(berlin(2026, 11, 24, 16, 30)) == "tomorrow 12:30"


def test_mail_after_closing_is_answered_next_open_day() -> None:
    """Tuesday 20:00, after closing: 'tomorrow 14:00'."""
    assert eta(berlin(2026, 11, 24, 20, 0)) == "tomorrow 14:00"


@pytest.mark.parametrize("received", [berlin(2026, 11, 27, 19, 0), berlin(2026, 11, 28, 12, 0)])
def test_weekend_mail_is_answered_on_monday(received: dt.datetime) -> None:
    """Friday evening and Saturday mail: 'Monday 14:00'."""
    assert eta(received) == "Monday 14:00"


def test_sunday_mail_is_answered_tomorrow() -> None:
    """On Sunday, Monday is 'tomorrow'."""
    assert eta(berlin(2026, 11, 29, 23, 59)) == "tomorrow 14:00"


def test_friday_afternoon_spans_the_weekend() -> None:
    """Friday 17:00: one hour on Friday, three on Monday: 'Monday 13:00'."""
    assert eta(berlin(2026, 11, 27, 17, 0)) == "Monday 13:00"


def test_holidays_are_skipped() -> None:
    """Wednesday 23 December evening: 24th and 25th are holidays, then the weekend: Monday 28th."""
    received = berlin(2026, 12, 23, 19, 0)
    assert due_time(received, SHOP) == berlin(2026, 12, 28, 14, 0)
    assert eta(received) == "Monday 14:00"


def test_far_away_answer_names_the_date() -> None:
    """A week or more ahead, the day's name would mislead: '7 January 14:00'."""
    long_break = HoursConfig(timezone="Europe/Berlin", opens=(10, 0), closes=(18, 0), answer_within_hours=4,
                             holidays=frozenset(dt.date(2026, 12, 21) + dt.timedelta(days=n) for n in range(17)))
    assert eta(berlin(2026, 12, 18, 19, 0), long_break) == "7 January 14:00"


def test_spring_forward_gives_the_right_utc_time() -> None:
    """Friday before the change to summer time (29 March 2026): Monday 13:00 is 11:00 UTC, not 12:00."""
    due = due_time(berlin(2026, 3, 27, 17, 0), SHOP)
    assert due == dt.datetime(2026, 3, 30, 11, 0, tzinfo=dt.UTC)
    assert describe_eta(due, berlin(2026, 3, 27, 17, 0), SHOP) == "Monday 13:00"


def test_fall_back_gives_the_right_utc_time() -> None:
    """Friday before the change to winter time (25 October 2026): Monday 13:00 is 12:00 UTC."""
    due = due_time(berlin(2026, 10, 23, 17, 0), SHOP)
    assert due == dt.datetime(2026, 10, 26, 12, 0, tzinfo=dt.UTC)
    assert describe_eta(due, berlin(2026, 10, 23, 17, 0), SHOP) == "Monday 13:00"


def test_eta_is_told_in_the_shops_time_zone() -> None:
    """A customer mail stamped in UTC is answered in Berlin time: 09:30 UTC in winter is 10:30 there."""
    received = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)
    assert eta(received) == "today 14:30"


def test_answer_time_longer_than_a_day() -> None:
    """Twelve open hours from Monday 10:00 end Tuesday 14:00."""
    slow = HoursConfig(timezone="Europe/Berlin", opens=(10, 0), closes=(18, 0), answer_within_hours=12)
    assert add_business_hours(berlin(2026, 11, 23, 10, 0), 12, slow) == berlin(2026, 11, 24, 14, 0)


def test_shop_open_on_saturday() -> None:
    """A shop that opens on Saturdays answers Friday-evening mail on Saturday."""
    six_days = HoursConfig(timezone="Europe/Berlin", days=(0, 1, 2, 3, 4, 5), opens=(10, 0), closes=(18, 0),
                           answer_within_hours=4)
    assert eta(berlin(2026, 11, 27, 19, 0), six_days) == "tomorrow 14:00"
