"""Stored times: ISO 8601 text in UTC, to the millisecond."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from hypothesis import given
from hypothesis import strategies as st

from supportd.base.clock import iso

ZONES = st.sampled_from([dt.UTC, zoneinfo.ZoneInfo("Europe/Berlin"), zoneinfo.ZoneInfo("America/St_Johns"),
                         dt.timezone(dt.timedelta(hours=-3, minutes=-7))])


@given(st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=ZONES))
def test_iso_is_isoformat_in_utc_to_the_millisecond(when: dt.datetime) -> None:
    """``iso`` keeps the text up to the second; it writes what ``isoformat`` writes."""
    assert iso(when) == when.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def test_iso_of_two_times_in_one_second() -> None:
    first = dt.datetime(2026, 11, 24, 9, 30, 5, 1999, tzinfo=dt.UTC)
    assert iso(first) == "2026-11-24T09:30:05.001+00:00"
    assert iso(first.replace(microsecond=999999)) == "2026-11-24T09:30:05.999+00:00"
    assert iso(first.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))) == "2026-11-24T09:30:05.001+00:00"
