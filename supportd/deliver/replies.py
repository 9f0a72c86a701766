"""Reply templates (``replies/NAME.txt``, optional ``NAME.html``) and the emails built from them.

Templates are Jinja2, rendered in its sandbox with strict variables. Customer text (their subject,
their name) is only ever passed in as a value: a subject such as ``{{ config }}`` is printed
literally, never evaluated. Jinja2 is used rather than ``str.format`` because the owner needs
conditions and loops ("{% if order %}...") and the sandbox keeps a template from reaching into
Python objects.

Emails are built with the standard library's email API only (see ``build_email``), so a CR or LF
in a subject or a name can never start a new header.
"""

from __future__ import annotations

import datetime as dt
import email.charset
import email.policy
import email.utils
import functools
import random
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.utils import formataddr
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import SandboxedEnvironment

from supportd.base.errors import Problem
from supportd.base.yamlfile import modification_times, shown_path
from supportd.intake.message import Address, Inbound
from supportd.intake.owntext import OurText, html_to_text

# Replies the code sends by name, beside those the rules name.
REQUIRED = (
    "faq", "confirm", "confirm_unclear", "confirm_expired", "action_done", "action_kept", "action_confirmed",
    "cap_notice", "resolved", "owner_action", "owner_escalation", "owner_command",
)
OWNER_PREFIX = "owner_"
TICKET_TAG = re.compile(r"\[#\d{3,9}\]")
LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")
_QUOTED_PRINTABLE_UTF8 = email.charset.Charset("utf-8")
_QUOTED_PRINTABLE_UTF8.body_encoding = email.charset.QP  # readable in any client, unlike base64


class _Compat32OneLine(email.policy.Compat32):
    """compat32, with a short cut for a header that needs no folding and no encoding.

    A one-line ASCII value that fits in 78 characters with its name is written as ``Name: value``,
    which is what compat32's ``Header`` folding gives for it too (``tests/test_replies.py`` holds
    the two equal); only that ``Header`` object is skipped. It was half of a reply's serialisation
    (cProfile of a 3,000-reply backlog: 3.0 s of 3.6 s in folding). Any other value folds as before.
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and _fits_one_line(name, value):
            return f"{name}: {value}{self.linesep}"
        folded: str = super()._fold(name, value, sanitize)  # type: ignore[misc]
        return folded


def _fits_one_line(name: str, value: str) -> bool:
    """Whether compat32 writes ``name: value`` as it is (see ``_Compat32OneLine``)."""
    return (len(name) + 2 + len(value) <= 78 and value.isascii() and value.isprintable()
            and value == value.strip() and "  " not in value)


# Outgoing mail's policy: compat32's output, faster (see _Compat32OneLine).
OUTGOING_POLICY = _Compat32OneLine()
# A reply to a non-ASCII address carries it in UTF-8 (RFC 6532); compat32 would RFC 2047-encode it.
# Lines up to RFC 5322's hard limit of 998: at the default 78, this policy writes any longer word as
# encoded words, which turned a long In-Reply-To / References Message-ID into "=?utf-8?q?=3C...",
# an ID no mail client threads by, and a display name's long word into a header with an empty line.
UTF8_HEADERS = email.policy.SMTPUTF8.clone(linesep="\n", max_line_length=998)
PHRASES_TO_AVOID = ("yes, but", "yes but", "i don't know", "i do not know", "i dont know", "beats me",
                    "i'm busy", "i am busy", "im busy", "no idea", "not my problem", "can't help you",
                    "cannot help you")
VARIABLES = {
    "shop": "the shop's name",
    "footer": "the shop's contact details (shop.contact_footer)",
    "name": "the customer's first name, or '' when unknown",
    "customer": "the customer's full name or address",
    "email": "the customer's address",
    "ticket": "the ticket number, e.g. 1042",
    "ticket_tag": "the ticket tag, e.g. [#1042]",
    "subject": "the customer's subject (without Re:)",
    "intent": "the intent, e.g. defect",
    "eta": "when a person answers, e.g. 'Monday 10:00'",
    "order_number": "the order number the customer gave, or None",
    "order": "order status from the order source: order.order (its number), order.status, order.tracking, "
             "order.carrier, order.tracking_url; None when not found",
    "reward_code": "a thank-you code from the pool, or None",
    "snippets": "per-rule texts from replies/snippets/, e.g. snippets.sizing",
    "mentions": "side remarks worth an offer, e.g. ['unsubscribe']",
    "action": "what a held change does, e.g. 'cancel order 77120'",
    "done": "the same, once done, e.g. 'cancelled order 77120'",
    "expires": "when a confirmation request expires, e.g. 'Thursday 14:00'",
    "token": "the confirmation code (confirm template only)",
    "undo": "how to undo or come back, where that exists",
    "message": "a personal text (supportd resolve --message), or ''",
    "count": "how many messages today (cap notice)",
    "details": "facts for the owner (owner_ templates)",
    "faq_answer": "the answer of the FAQ entry the question matched (rules/60-faq-*.yaml), or None",
    "language": "the customer's language, e.g. 'de' (replies/de/NAME.txt is used when it exists)",
    "photos": "names of the photos the customer attached (a defect reply thanks for them)",
    "result": "what the owner's command by mail did, or why nothing was done (owner_command)",
    "words": "the owner's command as they wrote it (owner_command)",
    "understood": "whether supportd understood the owner's command (owner_command)",
    "help": "the commands an owner can send by mail (owner_command)",
}

_UNSET: dict[str, Any] = dict.fromkeys(VARIABLES)  # a template may name any variable; unset ones are None


@dataclass(frozen=True)
class Rendered:
    text: str
    html: str | None


class _SandboxedEnvironment(SandboxedEnvironment):
    """Jinja2's sandbox, with each template's globals in a plain dict.

    Jinja2 keeps a template's globals as a ``ChainMap`` over the environment's and iterates them
    twice for every context it makes (a render, and each ``include`` in it): ChainMap iterates in
    Python, which was 5% of the main process's CPU for a backlog's replies (py-spy). Nothing in
    supportd changes the globals once a template is loaded, so a dict made then renders the same.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}  # ChainMap(d, self.globals): the same keys and values


def sandboxed_environment(folder: Path) -> SandboxedEnvironment:
    """The one Jinja2 environment supportd renders templates in (replies, FAQ answers, the digest's page):
    the sandbox, an unknown variable is an error, ``.html`` templates are autoescaped (a value can never
    become markup), and block tags leave no blank lines behind.

    A template is read once: an edit reaches the daemon through a checked reload (SIGHUP, or the edit
    noticed by its stamps, see ``reply_file_stamps``), never half-checked at the next render (Jinja's
    ``auto_reload`` also cost a ``stat`` of each template at every reply: 3% of a backlog's time)."""
    return _SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(folder)),
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def template_files(folder: Path) -> frozenset[str]:
    """The templates under ``folder``, as Jinja names them ('de/defect.txt')."""
    if not folder.is_dir():
        return frozenset()
    return frozenset(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in (".txt", ".html"))


def reply_file_stamps(folder: Path) -> dict[str, float]:
    """Modification times of the reply templates, to notice an edit without a SIGHUP."""
    return modification_times((name, folder / name) for name in template_files(folder))


class Replies:
    """The owner's reply templates."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = sandboxed_environment(folder)
        self.files = template_files(folder)  # as loaded: which localised and HTML variants exist
        self._answers: dict[str, jinja2.Template] = {}  # FAQ answers, compiled once
        self._our_text: OurText | None = None
        self.more_of_our_text: list[str] = []  # templates kept elsewhere: the FAQ's answers

    def our_text(self) -> OurText:
        """The fixed text of every template: what supportd writes, never the customer's words."""
        if self._our_text is None:
            fragments: list[str] = []
            for path in sorted(self.folder.rglob("*.txt")) + sorted(self.folder.rglob("*.html")):
                fragments.extend(self._fixed_text(path))
            for source in self.more_of_our_text:
                fragments.extend(self._fixed_pieces(source))
            self._our_text = OurText(fragments)
        return self._our_text

    def _fixed_text(self, path: Path) -> list[str]:
        pieces = self._fixed_pieces(path.read_text(encoding="utf-8", errors="replace"))
        return [html_to_text(piece) for piece in pieces] if path.suffix == ".html" else pieces

    def _fixed_pieces(self, source: str) -> list[str]:
        try:
            parsed = self.env.parse(source)
        except jinja2.TemplateSyntaxError:
            return []  # reported by check(); a broken template says nothing
        return [node.data for node in parsed.find_all(jinja2.nodes.TemplateData)]

    def names(self) -> set[str]:
        if not self.folder.is_dir():
            return set()
        found = {p.stem for p in self.folder.glob("*.txt")}
        found |= {f"snippets/{p.stem}" for p in (self.folder / "snippets").glob("*.txt")}
        return found

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        values = _UNSET | dict(context)
        values["snippets"] = self._snippets(values.get("snippets") or (), values)
        name = self.localised(name, values.get("language"))
        if values.get("faq_answer"):  # the owner's answer text is a template too (never customer text)
            values["faq_answer"] = self.render_answer(str(values["faq_answer"]), values)
        text = self.env.get_template(f"{name}.txt").render(values).strip() + "\n"
        html = self.env.get_template(f"{name}.html").render(values) if f"{name}.html" in self.files else None
        return Rendered(text=text, html=html)

    def render_answer(self, source: str, context: Mapping[str, Any]) -> str:
        """An FAQ entry's answer (a template of the owner's, compiled once), rendered."""
        if source not in self._answers:
            self._answers[source] = self.env.from_string(source)
        values = _UNSET | dict(context)
        return self._answers[source].render(values).strip()

    def localised(self, name: str, language: str | None) -> str:
        """'de/defect' when the customer writes German and replies/de/defect.txt exists, else ``name``."""
        if language and LANGUAGE_CODE.match(language) and f"{language}/{name}.txt" in self.files:
            return f"{language}/{name}"
        return name

    def _snippets(self, names: Iterable[str], values: Mapping[str, Any]) -> dict[str, str]:
        if isinstance(names, dict):
            return names
        return {n: self.env.get_template(f"snippets/{n}.txt").render(values).strip() for n in names}

    def check(self, intent_replies: Mapping[str, set[str]] | None = None) -> list[Problem]:
        """Template syntax, unknown variables, and the shop's voice (see ``PHRASES_TO_AVOID``)."""
        problems: list[Problem] = []
        names = self.names()
        for required in REQUIRED:
            if required not in names:
                problems.append(Problem(str(self.folder / f"{required}.txt"), 1,
                                        "this reply is missing; supportd needs it (copy it from the defaults)"))
        defect_replies = (intent_replies or {}).get("defect", set())
        for path in sorted(self.folder.rglob("*.txt")) + sorted(self.folder.rglob("*.html")):
            problems.extend(self._check_file(path, path.stem in defect_replies))
        return problems

    def _check_file(self, path: Path, is_defect_reply: bool) -> list[Problem]:
        shown = shown_path(path, self.folder.parent)
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            parsed = self.env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            return [Problem(shown, exc.lineno or 1, f"template syntax: {exc.message}")]
        problems = []
        for variable in sorted(jinja2.meta.find_undeclared_variables(parsed) - set(VARIABLES)):
            problems.append(Problem(shown, _line_of(source, variable),
                                    f"unknown variable '{variable}'; known: {', '.join(VARIABLES)}"))
        lowered = source.lower().replace("’", "'")
        for phrase in PHRASES_TO_AVOID:
            for match in re.finditer(re.escape(phrase), lowered):
                problems.append(Problem(shown, lowered.count("\n", 0, match.start()) + 1,
                                        f"avoid '{phrase}': say what you will do and when", warning=True))
        in_language_folder = path.parent.parent == self.folder and bool(LANGUAGE_CODE.match(path.parent.name))
        customer_facing = (not path.stem.startswith((OWNER_PREFIX, "_"))) and (
            path.parent == self.folder or in_language_folder)
        if customer_facing and path.suffix == ".txt" and "footer" not in source:
            problems.append(Problem(shown, 1, "no contact footer: add {{ footer }} so the customer "
                                              "can reach a person"))
        if is_defect_reply and path.suffix == ".txt" and not ("thank" in lowered or "dank" in lowered):
            problems.append(Problem(shown, 1, "a defect reply should thank the customer for telling "
                                              "us (it spares the next customer the same trouble)"))
        return problems


def _line_of(source: str, word: str) -> int:
    found = re.search(r"\b" + re.escape(word) + r"\b", source)
    return source.count("\n", 0, found.start()) + 1 if found else 1


def sample_context() -> dict[str, Any]:
    """Values for every variable, to render each template once in ``supportd check``."""
    return {
        "shop": "Example Shop", "footer": "Example Shop · +49 30 1234567", "name": "Ada",
        "customer": "Ada Lovelace", "email": "ada@example.org", "ticket": 1042, "ticket_tag": "[#1042]",
        "subject": "Where is my order?", "intent": "delivery_status", "eta": "Monday 10:00",
        "order_number": "77120",
        "order": {"order": "77120", "status": "shipped", "tracking": "00340434161234567890", "carrier": "DHL",
                  "tracking_url": "https://example.org/track"},
        "reward_code": "THANKS-1234", "snippets": {}, "mentions": ["unsubscribe"],
        "action": "cancel order 77120", "done": "cancelled order 77120", "expires": "Thursday 14:00",
        "token": "x" * 27, "undo": "", "message": "",
        "count": 11, "details": "", "faq_answer": "We accept PayPal, credit cards and bank transfer.",
        "language": "en", "photos": [],
    }


# ---------------------------------------------------------------- building emails


def first_name(display_name: str) -> str:
    """'Ada Lovelace' -> 'Ada'; 'Lovelace, Ada' -> 'Ada'; an address or nothing -> ''."""
    name = display_name.strip().strip('"').strip()
    if not name or "@" in name:
        return ""
    if "," in name:
        name = name.split(",", 1)[1].strip()
    first = name.split()[0] if name.split() else ""
    return first if first[:1].isalpha() else ""


def reply_subject(topic: str, ticket: int | None, suffix: str = "") -> str:
    """'Re: <their subject> [#1042]', without doubling the tag or the Re:.

    Other ticket tags in their subject are dropped: the customer may have typed or copied one that
    is not theirs, and the reply must carry only the ticket it belongs to.
    """
    tag = f"[#{ticket}]" if ticket else ""
    base = " ".join(TICKET_TAG.sub(lambda m: m.group() if m.group() == tag else "", topic).split())[:150]
    base = base or "your message"
    if tag and tag in base:
        tag = ""
    parts = [f"Re: {base}", tag, suffix]
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Answering:
    """The message a mail answers (as aiosmtpd's Envelope carries a message's addressing): its thread
    headers, the fingerprint whose hash goes into ``X-Supportd-Ref`` so that after a state recovery the
    Sent folder tells what was answered, and its key in the ledger (the outbox sends a message's replies
    with it). ``NOTHING`` for mail that answers no message."""

    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    about: str = ""
    key: str | None = None

    @classmethod
    def message(cls, msg: Inbound, key: str | None = None, *, mark_answered: bool = True) -> Answering:
        """A reply to ``msg`` (``key``: its ledger key); ``mark_answered=False`` for mail that does not
        answer the customer's request."""
        return cls(msg.message_id, (*msg.references, msg.message_id), msg.fingerprint if mark_answered else "",
                   key)

    @classmethod
    def thread(cls, thread: Iterable[str]) -> Answering:
        """A follow-up in a ticket's thread of Message-IDs (the last one is answered)."""
        ids = tuple(thread)
        return cls(ids[-1] if ids else "", ids)


NOTHING = Answering()


@dataclass(frozen=True)
class Draft:
    """What one outgoing email says and whom it goes to; ``build_email`` and ``email_bytes`` write it.

    ``headers``: more headers, in order; ``Auto-Submitted`` among them is the RFC 3834 kind of mail
    (default ``auto-replied``), written before them. ``date`` is aware, in the shop's time zone.
    """

    sender: Address
    to: Address
    subject: str
    rendered: Rendered
    message_id: str
    date: dt.datetime
    answering: Answering = NOTHING
    headers: Mapping[str, str] | None = None


def build_email(draft: Draft) -> Message:
    """One outgoing email, built with the standard library's email API.

    Every header value passes ``_one_line`` first, so a CR or LF in a customer's subject or name
    can never start a header of its own; non-ASCII text is RFC 2047-encoded. (The compat32 API
    is used rather than ``EmailMessage``: measured 0.26 ms a message against 1.16 ms, which
    matters at hundreds of replies a second.) ``email_bytes`` writes the same mail without it.
    """
    msg = _body(draft.rendered)
    for name, value in _reply_headers(draft):
        msg[name] = value
    return msg


def email_bytes(draft: Draft) -> bytes:
    """The bytes of ``build_email``'s mail (as ``as_bytes`` writes them), written directly.

    Building the ``Message`` and running the generator over it was most of composing a reply
    (bench/compose.py: 0.13 of 0.23 ms a reply; written directly, 0.04). Here every header line is
    what the generator's ``OUTGOING_POLICY.fold_binary`` writes (its one-line short cut taken here,
    anything longer folded by it), every part's body is encoded by the same quoted-printable
    ``Charset``, in the generator's order and layout, so the bytes are the same
    (``tests/deliver/test_compose_bytes.py`` holds them equal; a multipart mail's boundary is random,
    drawn as the generator draws it). A reply to a non-ASCII address (RFC 6532) is written by the
    email package with the SMTPUTF8 policy, as before.
    """
    if not draft.to.email.isascii():
        return build_email(draft).as_bytes(policy=UTF8_HEADERS)
    fields = _reply_headers(draft)
    text = _encoded_body(draft.rendered.text)
    if not draft.rendered.html:
        return _header_bytes([*_TEXT_PART_HEADERS["plain"], *fields]) + b"\n" + text
    parts = [_header_bytes(_PART_OF_MULTIPART_HEADERS[subtype]) + b"\n" + body
             for subtype, body in (("plain", text), ("html", _encoded_body(draft.rendered.html)))]
    boundary = _boundary(b"\n".join(parts)).encode("ascii")
    head = _header_bytes([("Content-Type", f'multipart/alternative; boundary="{boundary.decode()}"'),
                          ("MIME-Version", "1.0"), *fields])
    delimiter = b"\n--" + boundary + b"\n"
    return head + b"\n--" + boundary + b"\n" + delimiter.join(parts) + b"\n--" + boundary + b"--\n"


# The headers ``_text_part`` gives a part, in its order; a part of a multipart mail has no MIME-Version.
_TEXT_PART_HEADERS = {
    subtype: (("Content-Transfer-Encoding", "quoted-printable"), ("MIME-Version", "1.0"),
              ("Content-Type", f'text/{subtype}; charset="utf-8"'))
    for subtype in ("plain", "html")
}
_PART_OF_MULTIPART_HEADERS = {subtype: tuple(field for field in fields if field[0] != "MIME-Version")
                              for subtype, fields in _TEXT_PART_HEADERS.items()}


def _header_bytes(fields: Iterable[tuple[str, str]]) -> bytes:
    """The header lines as the generator writes them with ``OUTGOING_POLICY`` (its short cut taken here)."""
    return b"".join(f"{name}: {value}\n".encode("ascii") if _fits_one_line(name, value)
                    else OUTGOING_POLICY.fold_binary(name, value) for name, value in fields)


def _encoded_body(content: str) -> bytes:
    """A part's body as ``_text_part`` leaves it: UTF-8, quoted-printable, LF line endings."""
    if not content:
        return b""
    encoded: str = _QUOTED_PRINTABLE_UTF8.body_encode(content.encode("utf-8"))
    return encoded.encode("ascii")


def _boundary(text: bytes) -> str:
    """A multipart boundary drawn as ``email.generator`` draws one: random, and in no line of ``text``."""
    boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    candidate, counter = boundary, 0
    while re.search(b"^--" + re.escape(candidate.encode("ascii")) + b"(--)?$", text, re.MULTILINE):
        candidate, counter = f"{boundary}.{counter}", counter + 1
    return candidate


def _reply_headers(draft: Draft) -> list[tuple[str, str]]:
    """A mail's headers after its MIME headers, in order, each value on one line (see ``build_email``)."""
    sender, to, answering = draft.sender, draft.to, draft.answering
    fields = [
        ("From", _from_header(sender)),
        ("To", address_header(_one_line(to.name), to.email)),
        ("Subject", _encoded(draft.subject, "Subject")),
        # In the shop's time zone, as a mail client writes it: "+0100", not "-0000".
        ("Date", _date_header(draft.date)),
        ("Message-ID", _one_line(draft.message_id)),
    ]
    if answering.in_reply_to:
        fields.append(("In-Reply-To", _one_line(answering.in_reply_to)))
    refs = [_one_line(r) for r in answering.references if r]
    if refs:
        fields.append(("References", " ".join(refs[-20:])))
    more = dict(draft.headers or {})
    fields.append(("Auto-Submitted", more.pop("Auto-Submitted", "auto-replied")))
    fields.append(("X-Auto-Response-Suppress", "All"))
    fields.extend((name, _encoded(value, name)) for name, value in more.items())
    return fields


# The shop is every reply's sender, and a backlog's replies share their second: each header is
# written once (format_datetime 10 us, formataddr 3 us; a cache hit about 1 us).
@functools.lru_cache(maxsize=16)
def _from_header(sender: Address) -> str:
    return formataddr((_one_line(sender.name), sender.email), charset="utf-8")


def _date_header(when: dt.datetime) -> str:
    """``format_datetime(when)``, cached by the local time AND its offset: aware datetimes compare by
    their instant (10:00 UTC == 11:00+01:00), and those two are different headers."""
    return _formatted_date(when.replace(microsecond=0, tzinfo=None), when.utcoffset())


@functools.lru_cache(maxsize=16)
def _formatted_date(local: dt.datetime, offset: dt.timedelta | None) -> str:
    return email.utils.format_datetime(local if offset is None else local.replace(tzinfo=dt.timezone(offset)))


def _body(rendered: Rendered) -> Message:
    text = _text_part(rendered.text, "plain")
    if not rendered.html:
        return text
    alternative = MIMEMultipart("alternative", policy=OUTGOING_POLICY)
    del text["MIME-Version"]
    alternative.attach(text)
    html = _text_part(rendered.html, "html")
    del html["MIME-Version"]
    alternative.attach(html)
    return alternative


def _text_part(content: str, subtype: str) -> Message:
    part = Message(policy=OUTGOING_POLICY)
    part.set_payload(content, _QUOTED_PRINTABLE_UTF8)  # adds MIME-Version, Content-Type and the encoding
    part.set_type(f"text/{subtype}")
    return part


def address_header(name: str, address: str) -> str:
    """``Name <address>`` for a header; a non-ASCII address (RFC 6532) is written as it is, the name
    encoded as for any other (such a mail is sent only with SMTPUTF8: see ``supportd.deliver.mailer``)."""
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    if not name:
        return address
    placeholder = "address@placeholder.invalid"
    return formataddr((name, placeholder), charset="utf-8").replace(placeholder, address)


def _encoded(value: str, header_name: str) -> str:
    line = _one_line(value)
    return line if line.isascii() else Header(line, "utf-8", header_name=header_name).encode()


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    """Header text on one line: CR, LF and other control characters become spaces."""
    if not value.isprintable():  # a printable value holds none: the regex is skipped (most values)
        value = CONTROL_CHARACTERS.sub(" ", value)
    return " ".join(value.split())
