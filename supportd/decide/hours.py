"""Business hours: when a person will answer, said honestly ("We will write back by Monday 10:00")."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from supportd.base.config import HoursConfig

MAX_DAYS_AHEAD = 400


def _is_open_day(day: dt.date, hours: HoursConfig) -> bool:
    return day.weekday() in hours.days and day not in hours.holidays


def add_business_hours(start: dt.datetime, amount: float, hours: HoursConfig) -> dt.datetime:
    """``start`` plus ``amount`` hours counted only while the shop is open (in the shop's time zone)."""
    zone = zoneinfo.ZoneInfo(hours.timezone)
    local = start.astimezone(zone)
    remaining = dt.timedelta(hours=amount)
    day = local.date()
    for _ in range(MAX_DAYS_AHEAD):
        if _is_open_day(day, hours):
            opens = dt.datetime.combine(day, dt.time(*hours.opens), zone)
            closes = dt.datetime.combine(day, dt.time(*hours.closes), zone)
            begin = max(opens, local)
            if begin < closes:
                if begin + remaining <= closes:
                    return (begin + remaining).astimezone(dt.UTC)
                remaining -= closes - begin
        day += dt.timedelta(days=1)
        local = dt.datetime.combine(day, dt.time(0, 0), zone)
    return (start + dt.timedelta(hours=amount)).astimezone(dt.UTC)  # no open days configured


def due_time(received: dt.datetime, hours: HoursConfig) -> dt.datetime:
    """When a person's answer is due for mail received at ``received``."""
    return add_business_hours(received, hours.answer_within_hours, hours)


# Day and month names by language, so a German reply says "Montag 10:00" (not the C locale's).
WORDS = {
    "en": ("today", "tomorrow", "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
           "January February March April May June July August September October November December".split(),
           "{day} {month}"),
    "de": ("heute", "morgen", "Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag".split(),
           "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split(),
           "{day}. {month}"),
}


def describe_eta(due: dt.datetime, now: dt.datetime, hours: HoursConfig, language: str = "en") -> str:
    """'today 15:00', 'tomorrow 10:00', 'Monday 10:00' or '24 December 10:00', in the shop's time zone
    (in German: 'heute 15:00', 'Montag 10:00', '24. Dezember 10:00')."""
    today, tomorrow, weekdays, months, date_form = WORDS.get(language, WORDS["en"])
    zone = zoneinfo.ZoneInfo(hours.timezone)
    local_due, local_now = due.astimezone(zone), now.astimezone(zone)
    clock = local_due.strftime("%H:%M")
    days = (local_due.date() - local_now.date()).days
    if days <= 0:
        return f"{today} {clock}"
    if days == 1:
        return f"{tomorrow} {clock}"
    if days < 7:
        return f"{weekdays[local_due.weekday()]} {clock}"
    return f"{date_form.format(day=local_due.day, month=months[local_due.month - 1])} {clock}"
