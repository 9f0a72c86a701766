"""Raw bytes from the mailbox to one ``Inbound`` value: who wrote, to whom, about what, in their own words.

The MIME tree comes from the standard library's compat32 parser, the one mail-parser 4.8 builds
its ``.message`` with. supportd used to call mail-parser and keep only that tree: its extras (a
second address parse, received hops, attachment and defect lists) were 60% of the parsing time
(cProfile of a 3,000-message backlog: 5.5 s of 8.8 s), and all 1,271 corpus files give the same
``Inbound`` either way. Malformed MIME never raises here: it becomes defects. What mail-parser's
own fields would have got wrong, measured on its 4.8 release, and how this module does it instead:

* ``text_plain`` also holds the text of attached messages and of the message inside a bounce, so
  the body is taken from the top-level text parts only.
* One broken RFC 2047 word leaves its whole Subject undecoded, and a part that lies about its
  charset gives U+FFFD or mojibake: headers and bodies are decoded by ``supportd.intake.charsets``.
* ``message_id`` is a list when the header appears twice: only the first one is used.
* It raised on some real bounces (4 of the 1,259 corpus files: an AttributeError in its Received
  header parsing).

What one message may cost is bounded here (``bench/hostile.py`` measures it): the MIME parser
reads the first ``MAX_PARSE_BYTES`` of a message (customers' words come first; a 17 MB body of NULs
peaked at 239 MB parsed whole; file names of attachments after that are found by a scan), a text
part is read up to ``MAX_PART_CHARS``, the text kept up to ``MAX_TEXT_CHARS`` and
``MAX_TEXT_LINES``, a whitespace run longer than ``MAX_SPACE_RUN`` becomes one space or line break
(so no pattern meets 40,000 spaces), a header value is cut at ``MAX_HEADER_VALUE`` characters and
``MAX_HEADER_VALUES`` values per name. A message nested deeper than Python's parser can follow is
read for its headers only.
"""

from __future__ import annotations

import datetime as dt
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import io
import itertools
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import AnyStr

from supportd.intake.charsets import decode_bytes, decode_header
from supportd.intake.identity import read_from, utf8_header
from supportd.intake.owntext import html_to_text, own_words

REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs|réf|ref|odp|r|fw|fwd|wg|tr)\s*(\[\d+\])?\s*:\s*)+",
                          re.IGNORECASE)
MESSAGE_ID = re.compile(r"<[^<>\s]+>")
REPORT_PARTS = {
    "message/delivery-status": "delivery-status",
    "message/global-delivery-status": "delivery-status",
    "message/feedback-report": "feedback-report",
    "message/disposition-notification": "disposition-notification",
}
MAX_ATTACHMENT_NAMES = 50
MAX_ZIP_BYTES = 10_000_000
MAX_PART_CHARS = 1_000_000  # of a text part's (transfer-encoded) payload; customers write far less
MAX_TEXT_CHARS = 200_000  # of the decoded text: about 100 pages
MAX_HTML_CHARS = 150_000  # of an HTML body turned into text (20,000 nested quotes in 720 KB took 1 s)
# Of the raw message given to the MIME parser, which holds every line as an object (~50 bytes each:
# 5 MB of short lines peaked at 190 MB). Attachment names further on are still found (TAIL_FILENAME).
MAX_PARSE_BYTES = 1_500_000
MAX_PARSE_LINES = 100_000  # and of its lines (24 MB of "a\\n" took 1.4 s and 119 MB at 1.5 MB alone)
# and its multiparts: the parser recurses per nesting level (2,000 nested parts: 2.3 s, then a RecursionError)
MAX_MULTIPARTS = 50
BOUNDARY = re.compile(rb"boundary\s*+=", re.IGNORECASE)
# Case-sensitive, so the search runs on the literal "name" (0.18 s over 24 MB with IGNORECASE, 0.01 s so);
# mail programs write the parameter in lower case.
TAIL_FILENAME = re.compile(rb"""name\*?=\s*+"?([^"\r\n;]{1,200})""")
MAX_SPACE_RUN = 40
MAX_TEXT_LINES = 3_000
MAX_HEADER_VALUE = 8_000  # References keeps its end (the nearest messages), other headers their start
MAX_HEADER_VALUES = 200
MAX_PARTS = 500  # parts looked at for the body and attachment names
LONG_SPACE = re.compile(rf"\s{{{MAX_SPACE_RUN + 1},}}")


@dataclass(frozen=True)
class Address:
    name: str
    email: str

    @property
    def key(self) -> str:
        """The address as compared: lower case (local parts are case-insensitive in practice)."""
        return self.email.lower()

    @property
    def local_part(self) -> str:
        return self.key.rpartition("@")[0]

    def __str__(self) -> str:
        if not self.name:
            return self.email
        try:
            return email.utils.formataddr((self.name, self.email))
        except UnicodeEncodeError:  # a non-ASCII address (RFC 6532): shown as it is
            return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class Inbound:
    """One customer email as the rules, the guard and the replies see it."""

    size: int
    fingerprint: str
    message_id: str
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    delivered_to: tuple[str, ...]
    return_path: str | None
    subject: str
    own_text: str
    full_text: str
    headers: dict[str, tuple[str, ...]]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    content_type: str
    report_type: str
    defects: tuple[str, ...] = field(default=())
    sender_doubt: str = ""  # why the From cannot be trusted ('' when it can: see supportd.intake.identity)
    attachment_names: tuple[str, ...] = field(default=())  # also the names inside .zip attachments

    def header(self, name: str) -> str:
        """The first value of a header ('' when absent); names are case-insensitive."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""

    @property
    def topic(self) -> str:
        """The subject without Re:/Fwd: prefixes."""
        return REPLY_PREFIX.sub("", self.subject).strip()

    @property
    def is_reply(self) -> bool:
        return bool(self.in_reply_to or REPLY_PREFIX.match(self.subject))

    @property
    def own_subject(self) -> str:
        """The subject as the customer's own words: empty for a reply, whose subject is ours."""
        return "" if self.is_reply else self.topic

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message answers, nearest first."""
        return self.in_reply_to + tuple(reversed(self.references))

    def written_at(self, now: dt.datetime) -> dt.datetime:
        """When the sender's client says it was written (Date), never later than ``now``; else ``now``.

        A person's reply found in the Sent folder is dated by the client that sent it, which is the
        real reply time even when supportd reads it hours later.
        """
        try:
            when = email.utils.parsedate_to_datetime(self.header("date"))
        except (TypeError, ValueError, IndexError):
            return now
        if when is None or when.tzinfo is None:
            return now
        return min(when.astimezone(dt.UTC), now)


def parse(raw: bytes) -> Inbound:
    """Parse one message. Never raises for malformed mail: what cannot be read is left empty."""
    parsed = _parsed_part(raw)
    msg = _mime_tree(parsed)
    raw_headers = _raw_headers(msg)
    headers = _headers(raw_headers)
    plain, html = _body_texts(msg)
    full_text = tame(plain if plain.strip() else html_to_text(html[:MAX_HTML_CHARS]))
    message_id = _first_message_id(headers.get("message-id", ()))
    return_path = _return_path(headers)
    reading = read_from(raw_headers.get("from", []), return_path)
    return Inbound(
        size=len(raw),
        fingerprint=_fingerprint(message_id, raw),
        message_id=message_id,
        sender=Address(decode_header(reading.name).strip(), reading.email) if reading else None,
        sender_doubt=reading.doubt if reading else "",
        reply_to=_addresses(raw_headers, "reply-to"),
        to=_addresses(raw_headers, "to"),
        cc=_addresses(raw_headers, "cc"),
        delivered_to=tuple(
            a.key for name in ("delivered-to", "x-original-to", "envelope-to")
            for a in _addresses(raw_headers, name)
        ),
        return_path=return_path,
        subject=" ".join(headers.get("subject", ("",))[0].split()),
        own_text=own_words(full_text),
        full_text=full_text,
        headers=headers,
        in_reply_to=_message_ids(headers.get("in-reply-to", ())),
        references=_message_ids(headers.get("references", ())),
        content_type=msg.get_content_type(),
        report_type=_report_type(msg),
        defects=tuple(sorted({type(d).__name__ for d in getattr(msg, "defects", [])})),
        attachment_names=(_attachment_names(msg) + _names_after(raw, len(parsed)))[:MAX_ATTACHMENT_NAMES],
    )


def tame(text: str) -> str:
    """The text with a bounded length and no whitespace run longer than ``MAX_SPACE_RUN``.

    A long run becomes a blank line when it held two line breaks, a line break when it held one,
    else one space: sentences and paragraphs read the same, and no pattern meets 40,000 spaces.
    At most ``MAX_TEXT_LINES`` lines are kept: finding the own words costs per line (100,000 lines
    of "a" took 0.73 s), and a customer's words and our quoted mail come first.
    """
    tamed = LONG_SPACE.sub(_one_space, text[:MAX_TEXT_CHARS])
    return tamed[:_end_of_lines(tamed, "\n", MAX_TEXT_LINES, len(tamed))]


def _end_of_lines(data: AnyStr, newline: AnyStr, lines: int, end: int) -> int:
    """Where the first ``lines`` lines of ``data[:end]`` end (``end`` when it has no more)."""
    if data.count(newline, 0, end) <= lines:
        return end
    position = 0
    for _ in range(lines):
        position = data.index(newline, position) + 1
    return position


def _one_space(found: re.Match[str]) -> str:
    breaks = found.group().count("\n")
    return "\n\n" if breaks >= 2 else "\n" if breaks else " "


def _parsed_part(raw: bytes) -> bytes:
    """The start of the message that the MIME parser reads: at most ``MAX_PARSE_BYTES``,
    ``MAX_PARSE_LINES`` and ``MAX_MULTIPARTS`` (an unfinished multipart is parsed as far as it goes)."""
    end = _end_of_lines(raw, b"\n", MAX_PARSE_LINES, min(len(raw), MAX_PARSE_BYTES))
    beyond = next(itertools.islice(BOUNDARY.finditer(raw, 0, end), MAX_MULTIPARTS, None), None)
    if beyond is not None:
        end = beyond.start()
    return raw if end == len(raw) else raw[:end]


def message_id_of(raw: bytes) -> str:
    """The Message-ID ``parse(raw)`` gives, read from the headers alone (no body, no own words).

    For the Sent folder, where most mail is supportd's own copies: telling one from its signed
    Message-ID took a full parse, 2.5 ms a copy (cProfile, 3,000 copies: 7.6 s of a 57 s pass).
    """
    headers = _headers(_raw_headers(email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)))
    return _first_message_id(headers.get("message-id", ()))


def _mime_tree(raw: bytes) -> email.message.Message:
    try:
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    except RecursionError:  # nested deeper than the parser follows: the headers are still read
        return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)


def _raw_headers(msg: email.message.Message) -> dict[str, list[str]]:
    """Each header's values as written (encoded words not yet decoded, 8-bit bytes read as UTF-8), by
    lower-case name, in order: read once for every header that ``parse`` looks at (it used to read the
    whole list again for each address header: a sixth of parsing the backlog benchmark's mail)."""
    result: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        result.setdefault(name.strip().lower(), []).append(utf8_header(str(value)))
    return result


def _headers(raw_headers: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(decode_header(_capped(name, value)) for value in values[:MAX_HEADER_VALUES])
            for name, values in raw_headers.items()}


def _capped(name: str, value: str) -> str:
    if len(value) <= MAX_HEADER_VALUE:
        return value
    return value[-MAX_HEADER_VALUE:] if name == "references" else value[:MAX_HEADER_VALUE]


def _addresses(raw_headers: dict[str, list[str]], header: str) -> tuple[Address, ...]:
    values = raw_headers.get(header)
    if not values:
        return ()
    found = []
    for name, addr in email.utils.getaddresses(values):
        addr = addr.strip().strip("<>")
        if "@" in addr and not any(c.isspace() for c in addr):
            found.append(Address(name=decode_header(name).strip(), email=addr))
    return tuple(found)


def _return_path(headers: dict[str, tuple[str, ...]]) -> str | None:
    """The envelope sender as the delivering server recorded it; '' is the null sender <>."""
    values = headers.get("return-path")
    if not values:
        return None
    return values[-1].strip().strip("<>").strip()


def _first_message_id(values: tuple[str, ...]) -> str:
    for value in values:
        found = MESSAGE_ID.search(value)
        if found:
            return found.group()
    return ""


def _message_ids(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(mid for value in values for mid in MESSAGE_ID.findall(value))


def _fingerprint(message_id: str, raw: bytes) -> str:
    """What identifies a message across mailbox rebuilds: its Message-ID, else a hash of its bytes."""
    if message_id:
        return "mid:" + message_id.lower()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _report_type(msg: email.message.Message) -> str:
    """'delivery-status', 'feedback-report', ... for machine reports; '' for ordinary mail.

    The report-type parameter when given, else the kind of report part inside (some bounces leave
    the parameter out), else 'unknown' for a multipart/report.
    """
    is_report = msg.get_content_type() == "multipart/report"
    declared = str(msg.get_param("report-type", "") or "").lower() if is_report else ""
    if declared:
        return declared
    for part in _top_level_parts(msg):
        found = REPORT_PARTS.get(part.get_content_type())
        if found:
            return found
    return "unknown" if is_report else ""


def _top_level_parts(msg: email.message.Message) -> Iterator[email.message.Message]:
    """The parts of this message in order, without descending into attached messages (message/rfc822);
    at most ``MAX_PARTS`` of them. A loop, not recursion: 2,000 nested parts cost 2,000 steps."""
    stack = [msg]
    for _ in range(MAX_PARTS):
        if not stack:
            return
        part = stack.pop()
        yield part
        payload = part.get_payload() if part.is_multipart() and part.get_content_maintype() != "message" else None
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, email.message.Message))


def _body_texts(msg: email.message.Message) -> tuple[str, str]:
    """The first text/plain and first text/html body of the message itself (not attachments)."""
    plain = html = None
    for part in _top_level_parts(msg):
        if part.is_multipart() or _is_attachment(part):
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = _decoded(part)
        elif kind == "text/html" and html is None:
            html = _decoded(part)
    if plain is None and html is None and not msg.is_multipart() and msg.get_content_maintype() == "text":
        plain = _decoded(msg)
    return plain or "", html or ""


def _attachment_names(msg: email.message.Message) -> tuple[str, ...]:
    """File names of the message's own attachments, and of the files inside attached .zip archives.

    The guard looks for executables here (malware mail has a forged sender: no reply may go out).
    Archives are listed, never extracted; a broken or oversized one is skipped.
    """
    names: list[str] = []
    for part in _top_level_parts(msg):
        if part.is_multipart():
            continue
        name = decode_header(str(part.get_filename() or "")).strip()
        if not name:
            continue
        names.append(name)
        if name.lower().endswith(".zip"):
            names.extend(f"{name}/{inner}" for inner in _zip_members(part))
    return tuple(names[:MAX_ATTACHMENT_NAMES])


def _names_after(raw: bytes, start: int) -> tuple[str, ...]:
    """File names in the part headers beyond what the MIME parser read (for the guard's executable check)."""
    if len(raw) <= start:
        return ()
    found = itertools.islice(TAIL_FILENAME.finditer(raw, start), MAX_ATTACHMENT_NAMES)
    return tuple(decode_header(m.group(1).decode("utf-8", "replace")).strip() for m in found)


def _zip_members(part: email.message.Message) -> list[str]:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: nothing to list
        return []
    if not isinstance(payload, bytes) or len(payload) > MAX_ZIP_BYTES:
        return []
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            return archive.namelist()[:MAX_ATTACHMENT_NAMES]
    except (zipfile.BadZipFile, ValueError, OSError, RuntimeError, NotImplementedError):
        return []


def _is_attachment(part: email.message.Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).split(";")[0].strip().lower()
    return disposition == "attachment"


def _decoded(part: email.message.Message) -> str:
    raw = part.get_payload()
    if isinstance(raw, str) and len(raw) > MAX_PART_CHARS:
        part.set_payload(raw[:MAX_PART_CHARS])  # the rest is never read (the tree is ours alone)
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: take the text as it stands
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset()
    return decode_bytes(payload, str(charset) if charset else None)
