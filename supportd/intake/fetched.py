"""The answers to supportd's two bulk FETCHes, read straight from imaplib's data.

imapclient parses a FETCH answer with a lexer that reads a character at a time, and each
INTERNALDATE with ``email.utils``: profiled on a 3,000-mail backlog, about 10% of the main
thread's wall time went there. The answers to ``Mailbox.stored`` and ``Mailbox.fetch`` have a
small fixed shape, one response a message:

    * 12 FETCH (UID 40 RFC822.SIZE 2201 INTERNALDATE "01-Dec-2026 10:15:27 +0000")
    * 13 FETCH (UID 41 BODY[] {2201}
    <2201 bytes>)

imaplib keeps each response without its ``* `` and ``FETCH``: a line as bytes, or, where the line
ends in a literal, a tuple (the line up to and including ``{n}``, the n bytes) followed by the rest
of that line. ``parse`` reads that shape (the items in any order, plus the FLAGS and MODSEQ a server
may add) into what imapclient's ``parse_fetch_response`` gives for it; anything else, down to a day
without its leading zero or an unknown item, returns None, and the caller parses the same data with
imapclient instead. A response without a UID is an unsolicited update (Dovecot sends
``* 3 FETCH (FLAGS (\\Seen $X))`` when another session changes a flag) and is skipped: imapclient
keys it by its sequence number, which a caller could take for a UID.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from imapclient.fixed_offset import FixedOffset

SIZE = b"RFC822.SIZE"
INTERNALDATE = b"INTERNALDATE"
BODY = b"BODY[]"
Items = dict[bytes, Any]  # as imapclient's: b"RFC822.SIZE" -> int, b"INTERNALDATE" -> datetime, b"BODY[]" -> bytes

_MONTHS = {name.encode(): number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_START = re.compile(rb"\d+ \(")
# One item and what follows it: a space, or the response's closing parenthesis at the end of its line.
# INTERNALDATE as RFC 3501 has it (a year below 1000 is left to imapclient: email.utils reads 0099 as
# 1999); BODY[] as a literal (``{n}`` ends the line: the bytes are imaplib's) or NIL.
_ITEM = re.compile(
    rb"(?:UID (?P<uid>\d+)|RFC822\.SIZE (?P<size>\d+)"
    rb'|INTERNALDATE "(?P<day>[ \d]\d)-(?P<month>' + b"|".join(_MONTHS) + rb")-(?P<year>[1-9]\d{3}) "
    rb'(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d) (?P<zone>[+-]\d{4})"'
    rb"|BODY\[\] (?:\{(?P<length>\d+)\}\Z|(?P<nil>NIL))"
    rb'|FLAGS \([^()"{}]*\)|MODSEQ \(\d+\))'
    rb"(?P<end> |\)\Z)?"
)
_ZONES: dict[int, FixedOffset] = {}


def parse(data: list[Any]) -> dict[int, Items] | None:
    """UID -> items of imaplib's FETCH data, as imapclient would give them; None: not this shape."""
    found: dict[int, Items] = {}
    if data == [None]:  # imaplib's "no FETCH responses" (every message asked for is gone)
        return found
    elements = iter(data)
    for element in elements:
        text, literal = _split(element)
        start = _START.match(text)
        if start is None:
            return None
        pos = start.end()
        uid: int | None = None
        items: Items = {}
        while True:
            item = _ITEM.match(text, pos)
            if item is None:
                return None
            number, size, day, length = item.group("uid", "size", "day", "length")
            end = item.group("end")
            if number is not None:
                uid = int(number)
            elif size is not None:
                items[SIZE] = int(size)
            elif day is not None:
                items[INTERNALDATE] = arrived = _datetime(item)
                if arrived is None:
                    return None
            elif length is not None:
                if literal is None or len(literal) != int(length):
                    return None
                items[BODY] = literal
                text, literal = _split(next(elements, b""))  # the rest of the line after the literal
                end = text[:1]
            elif item.group("nil") is not None:
                items[BODY] = None
            if end == b" ":
                pos = item.end() if length is None else 1
            elif end == b")" and (length is None or text == b")") and literal is None:
                break
            else:
                return None
        if uid is not None:
            found.setdefault(uid, {}).update(items)
    return found


def _split(element: Any) -> tuple[bytes, bytes | None]:
    """imaplib's element: a line, or (the line up to its literal, the literal)."""
    if isinstance(element, bytes):
        return element, None
    if isinstance(element, tuple) and len(element) == 2 and all(isinstance(part, bytes) for part in element):
        return element[0], element[1]
    return b"", None  # not imaplib's: no response starts here, so parse returns None


def _datetime(date: re.Match[bytes]) -> dt.datetime | None:
    """INTERNALDATE as imapclient gives it with ``normalise_times`` off (its FixedOffset zone)."""
    day, month, year, hour, minute, second, zone = date.group("day", "month", "year", "hour", "minute", "second",
                                                              "zone")
    offset = int(zone[1:3]) * 3600 + int(zone[3:]) * 60
    if zone.startswith(b"-"):
        if not offset:
            return None  # -0000, "zone unknown": email.utils' reading differs between Pythons
        offset = -offset
    tz = _ZONES.get(offset)
    if tz is None:
        tz = _ZONES.setdefault(offset, FixedOffset(offset / 60))
    try:
        return dt.datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError:  # e.g. hour 25: imapclient reads it as no date
        return None
