"""A literal prefilter for the rules' regular expressions: skip a scan that cannot find anything.

The rules and the FAQ run some 290 regular-expression scans over every message, and 288 of them
find nothing. As RE2 and Hyperscan do, each pattern is read once, at rule load, for the words one
of which any match must contain (``need_of``): ``\\bwrong\\s+(item|size)\\b`` cannot match a text
without the word "wrong", ``cancel\\w*`` not without a word that starts with "cancel". A message's
words are read once and looked up in an index of those needs (``Prefilter``); a pattern whose needed
words are all missing is not run, since it would find nothing. Whatever matches is still found by
the pattern itself, so every hit and every decision stays what it was.

The derivation is conservative: it only claims what holds for every match.

- Literals are the pattern's own letters, digits and ``_`` (``is_word_letter``) read case-insensitively
  exactly as the regex engine reads them (``fold``: its simple lower case, and one letter for the few
  it treats as one, like s and ſ). Anything else (classes, ``.``, ``\\w``, a back-reference, an
  optional or repeated-from-zero part, a look-around) needs nothing.
- Where a literal's ends touch a word boundary (``\\b``, ``(?<!\\w)``, ``(?!\\w)``, a space or a
  punctuation mark in the pattern) it must be a whole word or the start of one; elsewhere it only
  has to occur inside a word. A text's words are its runs of ``\\w``, exactly where ``\\b`` sees them.
- Alternatives need the union of their words; any one alternative that needs nothing makes the whole
  need nothing, and so does a pattern with the ASCII or LOCALE flag (other word boundaries).
- ``tests/decide/test_prefilter.py`` checks the case folding against the engine (every character
  with a case mapping), and that no match is ever filtered out (hypothesis: texts of rule words, near-words and
  noise; texts made from each rule pattern; random patterns of the same kinds).
- The rule set builds its prefilter when it is made, so rules reloaded on SIGHUP or after an edit
  get their own; a pattern it was not built with is always scanned.

Measured (``python -m bench.rules``: the 2,184 dev-set texts and 1,158 corpus messages, load 3):
``RuleSet.decide`` 1.54-1.68 ms a message on main, 0.37-0.57 ms with this and the spelling fast path;
``FaqSet.match`` 0.72-0.80 -> 0.15-0.23 ms; regex searches a message 278 -> 15 (the rules' and FAQ's
patterns find something in 0.7% of their scans; the prefilter lets 3.2% more through).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# The engine's own parser and case folding (CPython 3.11+); without them nothing is ruled out.
_parser: Any
try:
    _parser = importlib.import_module("re._parser")
    _constants: Any = importlib.import_module("re._constants")
    _EXTRA_CASES: dict[int, tuple[int, ...]] = importlib.import_module("re._casefix")._EXTRA_CASES
    unicode_tolower: Callable[[int], int] = importlib.import_module("_sre").unicode_tolower
except (ImportError, AttributeError):  # pragma: no cover
    _parser = None

_WORD = re.compile(r"\w+")


def is_word_letter(char: str) -> bool:
    """A pattern letter whose every case-insensitive match is a word character (a letter, digit or _)
    of the same ``fold``: the Latin letters, digits and ``_`` (tests check this for every code point)."""
    return char == "_" or (char.isalnum() and ord(char) < 0x250)


@functools.lru_cache(maxsize=4096)
def _fold_char(code: int) -> str:
    lower = unicode_tolower(code)
    return chr(min((lower, *_EXTRA_CASES.get(lower, ()))))


def fold(text: str) -> str:
    """``text`` as the engine compares it case-insensitively: two characters that match each other
    under IGNORECASE fold to the same one (it keeps the length: "İ" is "i", not "i̇" as in lower())."""
    if text.isascii():
        return text.lower()
    return "".join(_fold_char(ord(char)) for char in text)


# ---------------------------------------------------------------- which patterns a text rules out


@dataclass(frozen=True)
class Need:
    """Words one of which any match contains: a whole word, the start of a word, or a part of one."""

    whole: frozenset[str] = frozenset()
    starts: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()


# Start-of-word literals are looked up by their first letters (at most this many), then compared.
_KEY_LETTERS = 4


class Prefilter:
    """The patterns of a rule set, indexed by the words they need.

    ``ruled_out(text)`` reads the text's words once (maximal runs of ``\\w``, as ``\\b`` sees them,
    folded) and looks each one up, instead of asking every pattern in turn. Patterns it was not built
    with, and those that need nothing, are never ruled out.
    """

    def __init__(self, patterns: Iterable[re.Pattern[str]]) -> None:
        self._whole: dict[str, set[int]] = {}
        self._starts: dict[str, list[tuple[str, int]]] = {}
        parts: dict[str, set[int]] = {}
        filtered: set[int] = set()
        self._patterns = tuple(patterns)  # held, so that no other pattern gets the id of one of them
        for pattern in self._patterns:
            need = need_of(pattern)
            if need is None:
                continue
            key = id(pattern)
            filtered.add(key)
            for word in need.whole:
                self._whole.setdefault(word, set()).add(key)
            for start in need.starts:
                self._starts.setdefault(start[:_KEY_LETTERS], []).append((start, key))
            for part in need.parts:
                parts.setdefault(part, set()).add(key)
        self._key_lengths = tuple(sorted({len(key) for key in self._starts}))
        self._parts = tuple(parts.items())
        self._filtered = frozenset(filtered)

    def ruled_out(self, text: str) -> frozenset[int]:
        """The ``id`` of each pattern that cannot match ``text``: none of the words it needs is there."""
        words = set(_WORD.findall(text.lower())) if text.isascii() else {fold(w) for w in _WORD.findall(text)}
        admitted: set[int] = set()
        whole, starts, key_lengths = self._whole, self._starts, self._key_lengths
        for word in words:
            found = whole.get(word)
            if found:
                admitted |= found
            for length in key_lengths:
                for start, key in starts.get(word[:length], ()):
                    if word.startswith(start):
                        admitted.add(key)
        if self._parts:
            joined = " ".join(words)
            for part, keys in self._parts:
                if part in joined:
                    admitted |= keys
        return self._filtered - admitted


# ---------------------------------------------------------------- what a pattern needs

# One requirement: a set of (kind, folded literal), one of which any match satisfies.
_Atoms = frozenset[tuple[str, str]]
WHOLE, START, PART = "whole", "start", "part"


@functools.lru_cache(maxsize=1024)
def need_of(pattern: re.Pattern[str]) -> Need | None:
    """What any match of ``pattern`` needs among a field's words; None when nothing can be said."""
    if _parser is None or not isinstance(pattern.pattern, str) or pattern.flags & (re.ASCII | re.LOCALE):
        return None
    try:
        parsed = _parser.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError):
        return None
    if parsed.state.flags & (re.ASCII | re.LOCALE):
        return None
    try:
        atoms = _sequence(list(parsed.data), False, False)
    except _Unknown:
        return None
    if not atoms:
        return None
    return Need(whole=frozenset(text for kind, text in atoms if kind == WHOLE),
                starts=tuple(sorted(text for kind, text in atoms if kind == START)),
                parts=tuple(sorted(text for kind, text in atoms if kind == PART)))


class _Unknown(Exception):
    """A construct the derivation does not read (ASCII or LOCALE inside): the pattern needs nothing."""


if _parser is not None:
    _C = _constants
    _ZERO_WIDTH = (_C.AT, _C.ASSERT, _C.ASSERT_NOT)
    _REPEATS = (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT)
    _NON_WORD_CATEGORIES = (_C.CATEGORY_SPACE, _C.CATEGORY_NOT_WORD)
    # Assertions after which the next character starts a word (when it is a word character), and before
    # which the previous one ends a word: \b, \A, ^ (start or after a line break), \Z, $.
    _STARTS_WORD = (_C.AT_BOUNDARY, _C.AT_BEGINNING_STRING, _C.AT_BEGINNING)
    _ENDS_WORD = (_C.AT_BOUNDARY, _C.AT_END_STRING, _C.AT_END)
    _WORD_CLASS = [(_C.IN, [(_C.CATEGORY, _C.CATEGORY_WORD)])]

_Items = Sequence[tuple[Any, Any]]


def _sequence(items: _Items, starts: bool, ends: bool) -> _Atoms | None:
    """The strongest requirement of one of the items of a concatenation (each holds for every match).

    ``starts``/``ends``: whether the sequence is known to begin or end at a word boundary."""
    found: list[_Atoms] = []
    index = 0
    while index < len(items):
        if _is_word_literal(items[index]):
            end = index
            while end + 1 < len(items) and _is_word_literal(items[end + 1]):
                end += 1
            literal = fold("".join(chr(code) for _, code in items[index : end + 1]))
            at_start, at_end = _bounded(items, index, -1, starts), _bounded(items, end, 1, ends)
            kind = WHOLE if at_start and at_end else START if at_start else PART
            found.append(frozenset({(kind, literal)}))
            index = end + 1
            continue
        inner = _node(items, index, starts, ends)
        if inner:
            found.append(inner)
        index += 1
    return max(found, key=_strength) if found else None


def _node(items: _Items, index: int, starts: bool, ends: bool) -> _Atoms | None:
    """What one part of a concatenation needs: a group, alternatives, a repeat; None for the rest."""
    op, value = items[index]
    at_start, at_end = _bounded(items, index, -1, starts), _bounded(items, index, 1, ends)
    if op is _C.SUBPATTERN:
        _group, add_flags, del_flags, sub = value
        if (add_flags | del_flags) & (re.ASCII | re.LOCALE):
            raise _Unknown
        return _sequence(sub.data, at_start, at_end)
    if op is _C.ATOMIC_GROUP:
        return _sequence(value.data, at_start, at_end)
    if op is _C.BRANCH:
        union: set[tuple[str, str]] = set()
        for alternative in value[1]:
            atoms = _sequence(alternative.data, at_start, at_end)
            if not atoms:
                return None  # this alternative may match without any literal
            union |= atoms
        return frozenset(union)
    if op in _REPEATS:
        low, high, sub = value
        # The first repetition starts where the repeat does; only a single one also ends where it does.
        return _sequence(sub.data, at_start, at_end and high == 1) if low >= 1 else None
    return None


def _is_word_literal(item: tuple[Any, Any]) -> bool:
    return item[0] is _C.LITERAL and is_word_letter(chr(item[1]))


def _bounded(items: _Items, index: int, step: int, outer: bool) -> bool:
    """Whether there is a word boundary right before (step -1) or after (step 1) item ``index``.

    True across an assertion like ``\\b`` or ``(?<!\\w)``, or next to a pattern part whose character
    there is never a word character (a space, a punctuation mark); ``outer`` at the sequence's edge."""
    neighbour = index + step
    while 0 <= neighbour < len(items):
        op, value = items[neighbour]
        if op not in _ZERO_WIDTH:
            return _edge_is_non_word(op, value, -step)
        if op is _C.AT and value in (_STARTS_WORD if step < 0 else _ENDS_WORD):
            return True
        if op is _C.ASSERT_NOT and value[0] == step and value[1].data == _WORD_CLASS:
            return True
        neighbour += step
    return outer


def _edge_is_non_word(op: Any, value: Any, side: int) -> bool:
    """Whether the first (side -1) or last (side 1) character this part matches is never a word character."""
    if op is _C.LITERAL:
        return _is_non_word_item((op, value))
    if op is _C.IN:
        return all(_is_non_word_item(item) for item in value)
    if op in _REPEATS:
        low, _high, sub = value
        edge = sub.data[:: -side][:1]
        return low >= 1 and len(edge) == 1 and _edge_is_non_word(edge[0][0], edge[0][1], side)
    return False


def _is_non_word_item(item: tuple[Any, Any]) -> bool:
    """ASCII punctuation and spaces (they match only themselves, case-insensitively too), \\s and \\W."""
    op, value = item
    if op is _C.LITERAL:
        return value < 128 and not is_word_letter(chr(value))
    return op is _C.CATEGORY and value in _NON_WORD_CATEGORIES


def _strength(atoms: _Atoms) -> tuple[int, int]:
    """How rarely a requirement holds, roughly: its shortest literal (a whole word counts 2 more), then fewer."""
    shortest = min(len(text) + (2 if kind == WHOLE else 0) for kind, text in atoms)
    return shortest, -len(atoms)
