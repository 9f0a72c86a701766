"""Who wrote a message, read so that nobody can be taken for someone else.

Mail servers, mail clients and Python have read the same From header differently (the
CVE-2023-27043 family): ``chloe@example.org <mallory@evil.example>``, an encoded word that decodes
to ``x:chloe@example.org;``, or ``<chloe@example.org>@evil.example`` were each taken as Chloe by a
lenient reading while a client shows, and answers, Mallory. supportd reads the header twice (the
standard library's RFC 5322 parser, and ``getaddresses``, strict where this Python offers it:
3.11.10+/3.12.6+) and checks the address itself. A From is *trusted* only when there is exactly one
From header holding exactly one address that every reading agrees on, with a plain addr-spec.

An untrusted From is not ignored: the message is kept and the owner is told, and the sender is
trusted for nothing but a plain acknowledgment (no order data, no thank-you code, no held action,
no confirmation), and only to an address the envelope agrees with (see ``reply_address``).
"""

from __future__ import annotations

import email.policy
import email.utils
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass

# getaddresses(strict=True) arrived in 3.11.10 / 3.12.6 (gh-102988); 3.11.7 here has only the lenient one.
STRICT_GETADDRESSES = "strict" in inspect.signature(email.utils.getaddresses).parameters
# One addr-spec as supportd accepts it: no spaces, brackets, quotes, commas or a second '@'.
# Non-ASCII is allowed (RFC 6532: jürgen@bücher.example); the domain has a dot or is a bracketed IP.
ADDR_SPEC = re.compile(r"[^\s@<>()\[\],;:\"\\]{1,64}@(?:[^\s@<>()\[\],;:\"\\.]{1,63}\.)*+[^\s@<>()\[\],;:\"\\.]{1,63}")
MAX_HEADER_CHARS = 4_000  # a From longer than this has its display name dropped before it is read
ENCODED_WORD = re.compile(r"=\?[^?\s]{1,75}\?[bBqQ]\?[^?\s]*+\?=")
IGNORED_DEFECTS = ("NonASCIILocalPartDefect",)  # RFC 6532 allows it; the SMTP side decides (SMTPUTF8)
# The From most mail has: "Plain Name <local@domain.example>" or a bare address, ASCII, no quotes,
# comments, dots in the name, encoded words or folding. Every reading agrees on it by construction
# (tests/intake/test_identity.py checks the full reading gives the same on generated and corpus
# headers), so it skips the two parsers: 364 us -> 2 us a message (read_from was 5% of a pass).
PLAIN_ADDRESS = r"[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]{1,64}){0,8}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"
PLAIN_FROM = re.compile(rf"(?:(?P<name>[A-Za-z0-9'_-]{{1,40}}(?: [A-Za-z0-9'_-]{{1,40}}){{0,5}}) "
                        rf"<(?P<bracketed>{PLAIN_ADDRESS})>|(?P<bare>{PLAIN_ADDRESS}))")


@dataclass(frozen=True)
class FromReading:
    """The sender's address, and whether it may be trusted (``doubt`` says why not)."""

    name: str
    email: str
    doubt: str = ""
    envelope_agrees: bool = False  # the Return-Path is this same address

    @property
    def trusted(self) -> bool:
        return not self.doubt


def utf8_header(value: str) -> str:
    """A raw header value with its 8-bit bytes read as UTF-8 (RFC 6532), not as replacement marks."""
    if value.isascii() or not any("\udc80" <= c <= "\udcff" for c in value):  # isascii: most values, at C speed
        return value
    return value.encode("ascii", "surrogateescape").decode("utf-8", "replace")


def read_from(values: Sequence[str], envelope: str | None = None) -> FromReading | None:
    """Read the From header(s), raw (before RFC 2047 decoding); None when no address is found.

    For an untrusted From, the address kept is the one the envelope sender (``Return-Path``) agrees
    with, when a reading found it (RFC 3834 section 4 sends automatic responses there); otherwise the
    first one found, which gets no acknowledgment at all (see ``supportd.decide.actions``).
    """
    if not values:
        return None
    plain = PLAIN_FROM.fullmatch(values[0]) if len(values) == 1 else None
    address = (plain["bracketed"] or plain["bare"]) if plain else ""
    if plain is not None and ADDR_SPEC.fullmatch(address):
        return FromReading(name=plain["name"] or "", email=address,
                           envelope_agrees=bool(envelope) and address.lower() == (envelope or "").lower())
    return full_reading(values, envelope)


def full_reading(values: Sequence[str], envelope: str | None = None) -> FromReading | None:
    """``read_from`` by both parsers, for any From (``read_from`` skips them for a plain one)."""
    if not values:
        return None
    joined = _without_huge_name(", ".join(values))
    strict = _rfc5322_reading(joined)
    lenient = _lenient_reading(joined)
    candidates = strict or lenient
    if not candidates:
        return None
    doubt = _doubt(values, strict, lenient)
    name, address = candidates[0]
    name = name or next((n for n, a in lenient if a.lower() == address.lower()), "")
    if doubt and envelope:
        agreed = [pair for pair in strict + lenient if pair[1].lower() == envelope.lower()]
        name, address = agreed[0] if agreed else (name, address)
    return FromReading(name=name, email=address, doubt=doubt,
                       envelope_agrees=bool(envelope) and address.lower() == (envelope or "").lower())


def _doubt(values: Sequence[str], strict: list[tuple[str, str]], lenient: list[tuple[str, str]]) -> str:
    if len(values) > 1:
        return f"{len(values)} From headers"
    found = {a.lower() for _, a in strict} | {a.lower() for _, a in lenient}
    if len(strict) > 1 or len(lenient) > 1:
        return f"From names {max(len(strict), len(lenient))} addresses"
    if len(found) != 1 or not strict or not lenient:
        shown = ", ".join(sorted(found)) or "none"
        return f"From is read differently by different parsers ({shown})"
    address = next(iter(found))
    if ADDR_SPEC.fullmatch(address) is None:
        return f"From address {address[:80]!r} is not a plain address"
    return ""  # a display name that reads like an address fools people, not supportd: left out of our To


def _without_huge_name(value: str) -> str:
    """A From longer than a person writes keeps only its last <address> (the display name is dropped,
    never parsed: 200 KB of name must cost nothing); without one it is cut, and reads as doubtful."""
    if len(value) <= MAX_HEADER_CHARS:
        return value
    _head, bracket, tail = value.rpartition("<")
    if bracket and len(tail) < 400 and "," not in tail:
        return bracket + tail
    return value[:MAX_HEADER_CHARS]


def _rfc5322_reading(value: str) -> list[tuple[str, str]]:
    """What the standard library's RFC 5322 header parser (policy.default) finds; [] on defects.

    It refuses a display name whose encoded words decode to CR or LF (ValueError); then the
    addresses are read with each encoded word as one plain word (it cannot hold an address then).
    """
    try:
        return _registry_reading(value)
    except ValueError:
        pass
    try:
        return [("", address) for _, address in _registry_reading(ENCODED_WORD.sub("encoded", value))]
    except Exception:  # the parser gave up on it: a reading that finds nothing
        return []


def _registry_reading(value: str) -> list[tuple[str, str]]:
    try:
        header = email.policy.default.header_factory("From", value)
        addresses = list(header.addresses)
        defects = [type(d).__name__ for d in header.defects]
    except ValueError:
        raise
    except Exception:  # the parser gave up on it: a reading that finds nothing
        return []
    if any(d not in IGNORED_DEFECTS for d in defects):
        return []
    return [(a.display_name, a.addr_spec) for a in addresses if "@" in a.addr_spec]


def _lenient_reading(value: str) -> list[tuple[str, str]]:
    """What ``getaddresses`` finds (strict where this Python has it), bare addresses only."""
    options = {"strict": True} if STRICT_GETADDRESSES else {}
    pairs = email.utils.getaddresses([value], **options)
    return [(name, addr.strip()) for name, addr in pairs if "@" in addr]


MAX_DISPLAY_NAME = 64


def display_name_for_reply(name: str) -> str:
    """The customer's name as we put it in our reply's To: one line, short, and no address in it.

    A 200 KB display name, or one that reads like another address ("chloe@example.org"), is left
    out: the reply is addressed to the bare address.
    """
    name = " ".join(name.split())
    if len(name) > MAX_DISPLAY_NAME or any(c in name for c in "@<>"):
        return ""
    return name
