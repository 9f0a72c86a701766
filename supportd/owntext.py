"""The customer's own words: what they wrote in this message, without quoted history or signatures.

Rules that sort mail must react only to what the customer says now. A reply that quotes our
"Please confirm you want to cancel" is not a cancellation, and a newsletter link in a signature is
not a request to unsubscribe. Everything here works line by line with bounded patterns, so a
hostile multi-megabyte body cannot stall the daemon, and no function raises on any ``str``.

What is cut from plain text (``own_words``):

- quoted lines (``>``) wherever they are; and from the "On <date>, <name> wrote:" attribution
  (also wrapped over up to three lines, and in German, French, Spanish, Dutch, Italian,
  Portuguese) to the end. Top-posting is the norm, and an answer below the quote is given up
  on purpose: a quoted line that the customer's client re-wrapped leaves an unquoted tail
  ("...by replying" / "YES to this message.") that must never read as the customer's "yes";
- Outlook history: "-----Original Message-----", a "_____" line followed by a From: header, or a
  bare From:/Sent:/To:/Subject: block (also German, French, Spanish, Italian, Dutch labels);
- forwarded messages ("---------- Forwarded message ---------", "Begin forwarded message:", ...);
- signatures: the "-- " delimiter and all after it, "Sent from my iPhone"-style lines, and a
  sign-off line ("Thanks,", "Best regards", "Viele Grüße") at the very end followed by at most six
  short lines (name, phone, company).

``html_to_text`` turns HTML-only mail into text and drops quoted history on the way (see
``_QUOTE_CLASS_WORDS`` and friends). ``sentences`` splits own words for classification.
"""

from __future__ import annotations

import contextlib
import re
from html.parser import HTMLParser

# ---------------------------------------------------------------------------------------------
# own_words
# ---------------------------------------------------------------------------------------------

# Own words come first; lines past this many are not read (keeps huge bodies fast, see own_words).
_MAX_LINES = 10_000
_MAX_ATTRIBUTION_LINES = 3
_MAX_ATTRIBUTION_CHARS = 400
_MAX_MARKER_CHARS = 120
_MAX_SIGN_OFF_TAIL_LINES = 6
_MAX_SHORT_LINE_CHARS = 80
_MAX_SIGNATURE_WORDS = 8
_HEADER_LOOKAHEAD_LINES = 6

_ATTRIBUTION_START = re.compile(r"(?:on|am|le|el|op|il|em|den|dne|w dniu)\s", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(
    r"(?:\bwrote|\bschrieb\b[^:]*|\ba écrit|\bescribió|\bschreef\b[^:]*|\bha scritto"
    r"|\bescreveu|\bskrev|\bnapisał)\s*:$",
    re.IGNORECASE,
)
_HISTORY_MARKER = re.compile(
    r"-{2,}\s*(?:forwarded message|original message|weitergeleitete nachricht"
    r"|ursprüngliche nachricht|message transféré|message d'origine|mensaje reenviado"
    r"|mensaje original|messaggio inoltrato|messaggio originale|doorgestuurd bericht"
    r"|oorspronkelijk bericht)\s*-{2,}"
    r"|(?:begin forwarded message|anfang der weitergeleiteten nachricht"
    r"|début du message réexpédié|inizio messaggio inoltrato|comienzo del mensaje reenviado)\s*:",
    re.IGNORECASE,
)
_OUTLOOK_SEPARATOR = re.compile(r"_{10,}")
_FROM_HEADER = re.compile(r"\*?(?:from|von|de|da|van|från|fra|od)\*?:\*?\s*\S", re.IGNORECASE)
_OTHER_HEADER = re.compile(
    r"\*?(?:sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|à|objet|enviado|fecha"
    r"|para|asunto|inviato|data|a|oggetto|verzonden|aan|onderwerp)\*?:",
    re.IGNORECASE,
)
_DEVICE_SIGNATURE = re.compile(
    r"sent from my \S.*|sent from (?:mail|outlook|yahoo mail|gmail|aol)\b.*"
    r"|get outlook for (?:ios|android)|von meinem \S.* gesendet|gesendet von meinem \S.*"
    r"|envoyé de mon \S.*|enviado desde mi \S.*|verstuurd vanaf mijn \S.*|inviato dal mio \S.*",
    re.IGNORECASE,
)
_SIGN_OFF_PHRASES = (
    "thanks", "thanks again", "thanks in advance", "thanks so much", "thanks a lot",
    "thanks and regards", "thanks & regards", "thank you", "thank you in advance",
    "thank you so much", "thank you again", "many thanks", "thx", "best", "best regards",
    "best wishes", "kind regards", "warm regards", "warmest regards", "regards", "cheers",
    "sincerely", "yours sincerely", "yours truly", "yours", "all the best", "take care",
    "viele grüße", "viele grüsse", "liebe grüße", "liebe grüsse", "beste grüße", "schöne grüße",
    "herzliche grüße", "freundliche grüße", "freundliche grüsse", "mit freundlichen grüßen",
    "mit freundlichen grüssen", "mit besten grüßen", "gruß", "gruss", "grüße", "lg", "vg", "mfg",
    "vielen dank", "danke", "danke schön", "cordialement", "bien à vous", "merci",
    "merci beaucoup", "saludos", "un saludo", "atentamente", "met vriendelijke groet", "groeten",
    "groetjes", "cordiali saluti", "saluti", "grazie",
)
# Longest first, so "Best regards" is not read as "Best" followed by a name.
_SIGN_OFF = re.compile(
    "(?:"
    + "|".join(re.escape(phrase) for phrase in sorted(_SIGN_OFF_PHRASES, key=len, reverse=True))
    + r")\b[\s,.!]*",
    re.IGNORECASE,
)


def own_words(text: str) -> str:
    """Only the customer's new words in a plain-text body: no quotes, history or signature.

    Only the first 10,000 lines are read; anything after them is dropped, as no customer
    writes that much before their quoted history or signature.
    """
    lines = _normalised_lines(text)
    kept = _lines_before_history(lines)
    kept = _without_sign_off(kept)
    return _tidy(kept)


def _normalised_lines(text: str) -> list[str]:
    unix = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = unix.split("\n", _MAX_LINES)
    return [line.rstrip() for line in lines[:_MAX_LINES]]


def _lines_before_history(lines: list[str]) -> list[str]:
    """Keep the customer's lines: skip quotes and device lines, stop where history begins."""
    next_content = _next_content_indexes(lines)
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line:
            kept.append(line)
            index += 1
            continue
        if _is_quoted(line) or _is_device_signature(line):
            index += 1
            continue
        if _starts_history(lines, index, next_content):
            break
        if _is_attribution(lines, index, next_content):
            break
        kept.append(line)
        index += 1
    return kept


def _next_content_indexes(lines: list[str]) -> list[int]:
    """For each index, the index of the first non-blank line at or after it (len if none)."""
    result = [len(lines)] * (len(lines) + 1)
    for index in range(len(lines) - 1, -1, -1):
        result[index] = index if lines[index].strip() else result[index + 1]
    return result


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _quote_follows(lines: list[str], index: int, next_content: list[int]) -> bool:
    following = next_content[min(index, len(lines))]
    return following < len(lines) and _is_quoted(lines[following])


def _is_device_signature(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) <= _MAX_MARKER_CHARS and bool(_DEVICE_SIGNATURE.fullmatch(stripped))


def _starts_history(lines: list[str], index: int, next_content: list[int]) -> bool:
    """Whether the quoted history (signature, Outlook header, forward) begins at this line."""
    line = lines[index]
    stripped = line.strip()
    if line == "--":
        return True
    if len(stripped) > _MAX_MARKER_CHARS:
        return False
    if _HISTORY_MARKER.fullmatch(stripped):
        return True
    if _OUTLOOK_SEPARATOR.fullmatch(stripped):
        following = next_content[index + 1]
        return following < len(lines) and _is_from_header(lines[following])
    return _is_from_header(line) and _header_lines_after(lines, index) >= 2


def _is_from_header(line: str) -> bool:
    return bool(_FROM_HEADER.match(line.strip()))


def _header_lines_after(lines: list[str], index: int) -> int:
    """How many of the next few lines look like Sent:/To:/Subject: headers of an Outlook block."""
    window = lines[index + 1 : index + 1 + _HEADER_LOOKAHEAD_LINES]
    return sum(1 for line in window if _OTHER_HEADER.match(line.strip()))


def _is_attribution(lines: list[str], start: int, next_content: list[int]) -> bool:
    """Whether a "... wrote:" line introducing quoted history starts here.

    "On <date>, <name> wrote:" may wrap over up to three lines and must contain a digit (the
    date). A bare "<name> wrote:" line counts only when quoted lines follow it.
    """
    first = lines[start].strip()
    dated = len(first) <= _MAX_ATTRIBUTION_CHARS and bool(_ATTRIBUTION_START.match(first))
    if dated and _is_dated_attribution(lines, start):
        return True
    return _is_bare_attribution(first) and _quote_follows(lines, start + 1, next_content)


def _is_dated_attribution(lines: list[str], start: int) -> bool:
    joined = ""
    end = min(start + _MAX_ATTRIBUTION_LINES, len(lines))
    for index in range(start, end):
        part = lines[index].strip()
        if not part or _is_quoted(part):
            return False
        joined = f"{joined} {part}" if joined else part
        if len(joined) > _MAX_ATTRIBUTION_CHARS:
            return False
        if joined.endswith(":") and _ATTRIBUTION_END.search(joined) and _has_digit(joined):
            return True
    return False


def _is_bare_attribution(line: str) -> bool:
    if len(line) > _MAX_MARKER_CHARS or not line.endswith(":"):
        return False
    return bool(_ATTRIBUTION_END.search(line))


def _has_digit(text: str) -> bool:
    return any(character.isdigit() for character in text)


def _without_sign_off(lines: list[str]) -> list[str]:
    """Cut a closing block ("Thanks," / "Anna" / "+49 ...") when it ends the message.

    The sign-off must follow some text of the customer's: in "Thanks!" / "I want a refund" the
    line after "Thanks!" is the message, not a name.
    """
    content = [index for index, line in enumerate(lines) if line.strip()]
    tail = content[-(_MAX_SIGN_OFF_TAIL_LINES + 1) :]
    for position, index in enumerate(tail):
        if index == content[0]:
            continue
        rest = tail[position + 1 :]
        if _is_sign_off(lines[index]) and all(_is_signature_line(lines[later]) for later in rest):
            return lines[:index]
    return lines


def _is_sign_off(line: str) -> bool:
    """A line that is only a sign-off, maybe with a name: "Thanks,", "Best regards, Anna"."""
    stripped = line.strip()
    if len(stripped) > _MAX_SHORT_LINE_CHARS:
        return False
    match = _SIGN_OFF.match(stripped)
    if match is None:
        return False
    rest = stripped[match.end() :].strip()
    return rest == "" or _looks_like_name(rest)


def _looks_like_name(text: str) -> bool:
    words = text.removeprefix("-").split()
    return 0 < len(words) <= 3 and all(word[0].isupper() for word in words)


def _is_signature_line(line: str) -> bool:
    """A name, phone, address or company line; not a question, sentence or postscript."""
    stripped = line.strip()
    words = stripped.split()
    if len(stripped) > _MAX_SHORT_LINE_CHARS or len(words) > _MAX_SIGNATURE_WORDS:
        return False
    if stripped.endswith(("?", "!")) or stripped.lower().startswith(("p.s", "ps:", "ps ")):
        return False
    if stripped.endswith(".") and len(words[-1]) > len("Ltd."):
        return False  # "The parcel arrived." ends a sentence; "ACME Ltd." does not
    return len(words) == 1 or not stripped[0].islower()


def _tidy(lines: list[str]) -> str:
    """Collapse runs of blank lines to one and drop blank lines at both ends."""
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    while tidy and not tidy[-1]:
        tidy.pop()
    return "\n".join(tidy)


# ---------------------------------------------------------------------------------------------
# html_to_text
# ---------------------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "blockquote", "center", "dd", "div", "dl", "dt", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section",
        "table", "tbody", "thead", "tfoot", "tr", "ul",
    }
)
_CELL_TAGS = frozenset({"td", "th"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
     "track", "wbr"}
)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
# Dropped with their content: every <blockquote>, and divs whose class contains one of these
# words (gmail_quote, yahoo_quoted, ...) or is one of these classes (Thunderbird's attribution
# line, and the signatures Gmail and Thunderbird mark as such).
_QUOTE_CLASS_WORDS = ("quote",)
_QUOTE_CLASSES = frozenset({"moz-cite-prefix", "gmail_attr", "moz-signature", "gmail_signature"})
# Outlook marks where the reply ends and the quoted message begins: drop these and all after.
_END_OF_REPLY_IDS = frozenset({"appendonsend", "divrplyfwdmsg"})


class _TextExtractor(HTMLParser):
    """Collects readable text, skipping hidden elements and quoted history."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skip_tag = ""
        self._skip_depth = 0
        self._pre_depth = 0
        self._stopped = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._stopped:
            return
        if self._skip_depth:
            self._track_skipped_start(tag)
            return
        if _ends_reply(attrs):
            self._stopped = True
        elif tag in _HIDDEN_TAGS or _is_quote(tag, attrs):
            self._start_skipping(tag)
        else:
            self._emit_start(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._stopped:
            return
        if self._skip_depth:
            if tag == self._skip_tag:
                self._skip_depth -= 1
            return
        if tag == "pre" and self._pre_depth:
            self._pre_depth -= 1
        if tag in _BLOCK_TAGS:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self._stopped or self._skip_depth:
            return
        if self._pre_depth:
            self.pieces.append(data)
            return
        text = re.sub(r"\s+", " ", data)
        if text == " " and self._at_line_start():
            return
        self.pieces.append(text)

    def _track_skipped_start(self, tag: str) -> None:
        if tag == "body" and self._skip_tag == "head":
            self._skip_depth = 0  # a <head> left open: the body still counts
        elif tag == self._skip_tag and tag not in _VOID_TAGS:
            self._skip_depth += 1

    def _start_skipping(self, tag: str) -> None:
        if tag in _VOID_TAGS:
            return
        self._skip_tag = tag
        self._skip_depth = 1

    def _emit_start(self, tag: str) -> None:
        if tag == "br":
            self.pieces.append("\n")
        elif tag == "li":
            self._newline()
            self.pieces.append("- ")
        elif tag in _CELL_TAGS:
            self.pieces.append(" ")
        elif tag in _BLOCK_TAGS:
            self._newline()
            if tag == "pre":
                self._pre_depth += 1

    def _newline(self) -> None:
        if not self._at_line_start():
            self.pieces.append("\n")

    def _at_line_start(self) -> bool:
        return not self.pieces or self.pieces[-1].endswith("\n")


def _is_quote(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    """Blockquotes, and divs whose class marks quoted history (Gmail, Yahoo, Thunderbird)."""
    if tag == "blockquote":
        return True
    if tag != "div":
        return False
    classes = _attribute(attrs, "class").lower().split()
    if any(name in _QUOTE_CLASSES for name in classes):
        return True
    return any(word in name for name in classes for word in _QUOTE_CLASS_WORDS)


def _ends_reply(attrs: list[tuple[str, str | None]]) -> bool:
    return _attribute(attrs, "id").lower() in _END_OF_REPLY_IDS


def _attribute(attrs: list[tuple[str, str | None]], name: str) -> str:
    for key, value in attrs:
        if key == name and value is not None:
            return value
    return ""


def html_to_text(html: str) -> str:
    """Readable text of an HTML mail body, with quoted history left out; never raises.

    Block elements start new lines, list items get "- ", script/style/head/title are dropped.
    Quoted history is dropped, not converted: see ``_QUOTE_CLASSES`` and ``_END_OF_REPLY_IDS``.
    """
    extractor = _TextExtractor()
    # html.parser is lenient, but malformed mail must still give what was read so far.
    with contextlib.suppress(Exception):
        extractor.feed(_defused_markup(html.replace("\x00", "")))
        extractor.close()
    return _tidy_html_text("".join(extractor.pieces))


def _defused_markup(html: str) -> str:
    """Rewrite markup so html.parser stays linear-time on hostile input.

    Python 3.11's parser rescans the rest of the document for every unterminated construct,
    so a few hundred kilobytes of "<a<a<a..." take minutes. Here comments and ``<!...>`` /
    ``<?...>`` declarations are removed (an unclosed comment runs to the end, as in browsers),
    and a '<' that does not open a tag closed by '>' before the next '<' becomes "&lt;".
    """
    out: list[str] = []
    position = 0
    next_gt = 0
    while position < len(html):
        start = html.find("<", position)
        if start == -1:
            out.append(html[position:])
            break
        out.append(html[position:start])
        if html.startswith("<!--", start):
            end = html.find("-->", start + 4)
            if end == -1:
                break
            position = end + 3
            continue
        if 0 <= next_gt <= start:
            next_gt = html.find(">", start + 1)
        next_lt = html.find("<", start + 1)
        closed = next_gt != -1 and (next_lt == -1 or next_gt < next_lt)
        opener = html[start + 1 : start + 2]
        if closed and opener in ("!", "?"):
            position = next_gt + 1
        elif closed and (opener.isalpha() or opener == "/"):
            out.append(html[start : next_gt + 1])
            position = next_gt + 1
        else:
            out.append("&lt;")
            position = start + 1
    return "".join(out)


def _tidy_html_text(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return _tidy(lines)


# ---------------------------------------------------------------------------------------------
# sentences
# ---------------------------------------------------------------------------------------------

# Only at the first mark of a run, and possessive, so long runs of dots stay linear-time.
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++[\"')\]»”’]*+(?=\s|$)")
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "approx.", "ca.",
     "z.b.", "u.a.", "bzw.", "d.h."}
)
# Abbreviations that only count as such before a number: "No. 123", but "I said no. Then".
_NUMBER_ABBREVIATIONS = frozenset({"no.", "nr.", "art.", "tel.", "ref."})
_LONGEST_ABBREVIATION = 10


def sentences(text: str) -> list[str]:
    """Split text into sentences, keeping each one's final punctuation ("...cancel?")."""
    result: list[str] = []
    for line in text.splitlines():
        if line and not line.isspace():
            result.extend(_line_sentences(line))
    return result


def _line_sentences(line: str) -> list[str]:
    found: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(line):
        if _is_abbreviation(line, start, match):
            continue
        found.append(line[start : match.end()])
        start = match.end()
    found.append(line[start:])
    return [sentence.strip() for sentence in found if sentence.strip()]


def _is_abbreviation(line: str, start: int, match: re.Match[str]) -> bool:
    """Whether a full stop ends an abbreviation or initial rather than a sentence."""
    if match.group(0) != ".":
        return False
    window_start = max(start, match.start() - _LONGEST_ABBREVIATION)
    word = line[window_start : match.end()].split()[-1].lstrip("([{\"'")
    lowered = word.lower()
    if lowered in _ABBREVIATIONS:
        return True
    if len(word) == 2 and word[0].isupper():
        return True  # an initial: "J. Smith"
    return lowered in _NUMBER_ABBREVIATIONS and _number_follows(line, match.end())


def _number_follows(line: str, position: int) -> bool:
    rest = line[position : position + 20].lstrip()
    return bool(rest) and (rest[0].isdigit() or rest[0] == "#")
