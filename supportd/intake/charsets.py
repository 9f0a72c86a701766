"""Turn MIME bytes and RFC 2047 headers into text, even when the sender's charset label lies.

Real mail often says latin-1 (or nothing) but carries UTF-8, which decodes without any error
into mojibake, or says utf-8 but carries latin-1. Rules that read the text must see the words the
customer typed, so decoding here prefers the interpretation that fits the bytes and never raises.
The standard library's ``email.header.decode_header`` gives up on a whole header when one
encoded word is broken; ``decode_header`` here decodes word by word instead.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass

# Labels whose decoder accepts any byte, so a UTF-8 payload under them turns into mojibake silently.
_LENIENT_CODECS = frozenset({"ascii", "iso8859-1", "iso8859-15", "cp1252"})
# Mail labelled latin-1 is nearly always windows-1252 (Outlook's curly quotes, the euro sign), as
# browsers also assume; cp1252 is tried first and latin-1 still catches its five unused bytes.
_SUPERSETS = {"iso8859-1": "cp1252"}

_LINE_BREAKS = re.compile(r"[\r\n]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?]*)\?=")


def decode_bytes(payload: bytes, declared: str | None) -> str:
    """Decode a MIME part's payload, trusting the declared charset only where the bytes agree."""
    codec = _codec_name(declared)
    text = _decode_first_fitting(payload, codec)
    return text.removeprefix("\ufeff").replace("\x00", "")


def _decode_first_fitting(payload: bytes, codec: str | None) -> str:
    """The first strict decoding that works; latin-1, which cannot fail, comes last."""
    for candidate in _candidates(payload, codec):
        text = _strict_decode(payload, candidate)
        if text is not None:
            return text
    return payload.decode("latin-1")


def _candidates(payload: bytes, codec: str | None) -> list[str]:
    """Codecs to try, in order: 8-bit text under a lenient or missing label tries UTF-8 first."""
    candidates: list[str] = []
    if (codec is None or codec in _LENIENT_CODECS) and not payload.isascii():
        candidates.append("utf-8")
    if codec is not None:
        if codec in _SUPERSETS:
            candidates.append(_SUPERSETS[codec])
        candidates.append(codec)
    candidates.extend(("utf-8", "cp1252"))
    return candidates


def _codec_name(declared: str | None) -> str | None:
    """The Python codec for a charset label, or None when it is missing or unknown."""
    if declared is None:
        return None
    label = declared.strip().strip("\"'").split("*", 1)[0]
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _strict_decode(payload: bytes, codec: str) -> str | None:
    try:
        return payload.decode(codec, "strict")
    except (UnicodeError, LookupError, ValueError, TypeError):
        return None


@dataclass
class _Piece:
    """A stretch of a header: plain text, or one or more adjacent encoded words in one charset.

    ``text`` is the raw header text, used as is when ``words`` is None (plain or undecodable).
    """

    text: str
    words: list[bytes] | None = None
    charset: str = ""


def decode_header(value: str) -> str:
    """Decode RFC 2047 encoded words in a header value, one by one; unfold it to a single line."""
    if "=?" not in value and "\n" not in value and "\r" not in value:
        return value  # no encoded word, no line break (most headers): nothing to decode or unfold
    pieces = _join_adjacent_words(_split_encoded_words(_unfold(value)))
    decoded = "".join(_piece_text(piece) for piece in pieces)
    # An encoded word may carry CR or LF itself; a header must stay on one line all the same.
    return _LINE_BREAKS.sub(" ", decoded)


def _unfold(value: str) -> str:
    """Replace each line break of a folded header (and the indentation after it) by one space."""
    parts = _LINE_BREAKS.split(value)
    if len(parts) == 1:
        return value
    first, *rest = parts
    pieces = [first.rstrip(" \t")] + [part.strip(" \t") for part in rest[:-1]]
    pieces.append(rest[-1].lstrip(" \t"))
    return " ".join(piece for piece in pieces if piece)


def _split_encoded_words(value: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        if match.start() > position:
            pieces.append(_Piece(value[position : match.start()]))
        charset, encoding, encoded = match.groups()
        raw = _word_bytes(encoding, encoded)
        words = None if raw is None else [raw]
        pieces.append(_Piece(match.group(0), words, charset))
        position = match.end()
    if position < len(value):
        pieces.append(_Piece(value[position:]))
    return pieces


def _join_adjacent_words(pieces: list[_Piece]) -> list[_Piece]:
    """Drop whitespace between decoded words (RFC 2047 §6.2); merge same-charset neighbours.

    Merging the bytes lets a multi-byte character that a sender split across two words decode.
    """
    joined: list[_Piece] = []
    for index, piece in enumerate(pieces):
        if _is_gap_between_words(pieces, index):
            continue
        previous = joined[-1] if joined else None
        if (
            previous is not None
            and previous.words is not None
            and piece.words is not None
            and previous.charset.lower() == piece.charset.lower()
        ):
            previous.words.extend(piece.words)
            continue
        joined.append(piece)
    return joined


def _is_gap_between_words(pieces: list[_Piece], index: int) -> bool:
    piece = pieces[index]
    if piece.words is not None or piece.text.strip() or index == 0 or index + 1 >= len(pieces):
        return False
    return pieces[index - 1].words is not None and pieces[index + 1].words is not None


def _piece_text(piece: _Piece) -> str:
    """Decode a run of words together when their bytes fit the charset, else each on its own."""
    if piece.words is None:
        return piece.text
    codec = _codec_name(piece.charset)
    together = b"".join(piece.words)
    if _strict_decode(together, codec or "utf-8") is not None:
        return decode_bytes(together, piece.charset)
    return "".join(decode_bytes(word, piece.charset) for word in piece.words)


def _word_bytes(encoding: str, encoded: str) -> bytes | None:
    """The bytes an encoded word carries, or None when they cannot be recovered."""
    data = _encoded_text_bytes(encoded)
    if encoding in "qQ":
        return _q_decode(data)
    return _b_decode(data)


def _encoded_text_bytes(text: str) -> bytes:
    """Encoded text should be ASCII; anything else is kept as UTF-8 rather than lost."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _q_decode(data: bytes) -> bytes | None:
    try:
        return binascii.a2b_qp(data, header=True)
    except (binascii.Error, ValueError):
        return None


def _b_decode(data: bytes) -> bytes | None:
    """Base64 with the padding repaired: senders often drop or miscount the trailing '='."""
    compact = b"".join(data.split()).rstrip(b"=")
    if len(compact) % 4 == 1:
        return None
    padded = compact + b"=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
