"""A literal prefilter for the rules' regular expressions: skip a scan that cannot find anything.

The rules and the FAQ run some 290 regular-expression scans over every message, and 288 of them
find nothing. As RE2 and Hyperscan do, each pattern is read once, at rule load, for the words one
of which any match must contain (``needs_of``): ``\\bwrong\\s+(item|size)\\b`` cannot match a text
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
  need nothing, and so does a pattern with the ASCII or LOCALE flag (other word boundaries). Each
  part of a sequence that needs words is a need of its own: ``\\b(is|are)\\s+(grey|gray)\\b`` needs
  "is" or "are" and also "grey" or "gray" (the strongest ``MAX_NEEDS`` are checked).
- ``tests/decide/test_prefilter.py`` checks the case folding against the engine (every character
  with a case mapping), and that no match is ever filtered out (hypothesis: texts of rule words,
  near-words and noise; texts made from each rule pattern; random patterns of the same kinds).
- The rule set builds its prefilter when it is made, so rules reloaded on SIGHUP or after an edit
  get their own; a pattern it was not built with is always scanned.

Measured (CPU time, 2026-12-01): ``python -m bench.rules`` (the 2,184 dev-set texts and 1,158
corpus messages) ``RuleSet.decide`` 1.43-1.48 -> 0.30 ms a message, ``FaqSet.match`` 0.63-0.70 ->
0.08 ms, regex searches a message 278 -> 7.4 (the patterns find something in 0.7% of their scans;
the prefilter lets 0.6% more through); on the backlog benchmark's mail 0.81 -> 0.17 ms a decision.
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


# A pattern as the prefilter knows it: its text and flags, the same in every process (not its id,
# which a pickled copy, as a read-ahead process gets, does not keep).
PatternKey = tuple[str, int]


def pattern_key(pattern: re.Pattern[str]) -> PatternKey:
    return pattern.pattern, pattern.flags


# Start-of-word literals are looked up by their first letters (at most this many), then compared.
_KEY_LETTERS = 4
# The needs of a pattern that are checked, the strongest first: "\b(stays|is|are)\s+(grey|gray)\b"
# needs one of the first three words and one of the last two, and "is" alone rules out little.
MAX_NEEDS = 3
_MIN_STRENGTH = 3


class Prefilter:
    """The patterns of a rule set, indexed by the words they need.

    ``ruled_out(text)`` reads the text's words once (maximal runs of ``\\w``, as ``\\b`` sees them,
    folded) and looks each one up, instead of asking every pattern in turn. Patterns it was not built
    with, and those that need nothing, are never ruled out.

    Each pattern with needs has a bit, one per rank of its needs (its first need, its second...): a
    word is the bits of the needs it meets, a text the OR of its words' bits, and a pattern may match
    where each of its needs has its bit. On the dev set and the corpus that is 31 us a message for
    both fields, 18 of them to read the words (89 us with sets of ids and a search for each part
    in the text); a text lets two patterns through on average, and most texts the same few.
    """

    def __init__(self, patterns: Iterable[re.Pattern[str]]) -> None:
        needs = {pattern_key(pattern): needs_of(pattern) for pattern in patterns}
        self._ids = [key for key, found in needs.items() if found]  # bit i is the pattern self._ids[i]
        self.known = frozenset(self._ids)
        count = len(self._ids)
        self._all = (1 << count) - 1
        self._without = [self._all] * MAX_NEEDS  # by rank: the patterns without a need of that rank
        self._literals: dict[tuple[str, str], int] = {}  # (kind, literal): the bits of the needs it meets
        for index, key in enumerate(self._ids):
            for rank, need in enumerate(needs[key]):
                self._without[rank] &= ~(1 << index)
                bit = 1 << (rank * count + index)
                for kind, literals in ((WHOLE, need.whole), (START, need.starts), (PART, need.parts)):
                    for literal in literals:
                        self._literals[kind, literal] = self._literals.get((kind, literal), 0) | bit
        self._starts: dict[str, list[tuple[str, int]]] = {}
        for (kind, literal), bits in self._literals.items():
            if kind == START:
                self._starts.setdefault(literal[:_KEY_LETTERS], []).append((literal, bits))
        self._key_lengths = tuple(sorted({len(key) for key in self._starts}))
        self._parts = [(literal, bits) for (kind, literal), bits in self._literals.items() if kind == PART]
        # By word, the needs it meets: words recur from mail to mail, so a text's words cost a lookup each
        # (a new word: 111 parts and a few starts to compare, 5 us; 10,000 characters of new words: 8 ms).
        self._meets: dict[str, int] = {}
        self._ruled_out: dict[int, frozenset[PatternKey]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """What a copy needs (a read-ahead process gets one): not the words and sets kept so far."""
        return {**self.__dict__, "_meets": {}, "_ruled_out": {}}

    def ruled_out(self, text: str) -> frozenset[PatternKey]:
        """The key of each pattern that cannot match ``text``: one of its needs finds no word there."""
        words = set(_WORD.findall(text.lower())) if text.isascii() else {fold(w) for w in _WORD.findall(text)}
        met = 0
        meets = self._meets
        for word in words:
            bits = meets.get(word)
            met |= self._meets_of(word) if bits is None else bits
        may_match, count, full = self._all, len(self._ids), self._all
        for rank, without in enumerate(self._without):
            may_match &= ((met >> (rank * count)) & full) | without
        found = self._ruled_out.get(may_match)
        return self._ruled_out_by(may_match) if found is None else found

    def _ruled_out_by(self, may_match: int) -> frozenset[PatternKey]:
        """The patterns whose bit is not in ``may_match`` (kept: most texts let the same few through)."""
        admitted, rest = [], may_match
        while rest:
            lowest = rest & -rest
            admitted.append(self._ids[lowest.bit_length() - 1])
            rest ^= lowest
        if len(self._ruled_out) >= MAX_SETS_KEPT:
            self._ruled_out.clear()
        found = self._ruled_out[may_match] = self.known.difference(admitted)
        return found

    def _meets_of(self, word: str) -> int:
        """The bits of the needs a word meets: as a whole word, by its start, by a part of it."""
        bits = self._literals.get((WHOLE, word), 0)
        for length in self._key_lengths:
            for start, start_bits in self._starts.get(word[:length], ()):
                if word.startswith(start):
                    bits |= start_bits
        for part, part_bits in self._parts:
            if part in word:
                bits |= part_bits
        if len(self._meets) >= MAX_WORDS_KEPT:
            self._meets.clear()
        self._meets[word] = bits
        return bits


# What is kept from text to text: words (about 150 bytes each) and sets ruled out (about 8 KB each).
MAX_WORDS_KEPT = 20_000
MAX_SETS_KEPT = 500


# ---------------------------------------------------------------- what a pattern needs

# One requirement: a set of (kind, folded literal), one of which any match satisfies.
_Atoms = frozenset[tuple[str, str]]
WHOLE, START, PART = "whole", "start", "part"


@functools.lru_cache(maxsize=1024)
def needs_of(pattern: re.Pattern[str]) -> tuple[Need, ...]:
    """What every match of ``pattern`` needs among a field's words (each of them, the strongest first,
    at most ``MAX_NEEDS``); none when nothing can be said."""
    if _parser is None or not isinstance(pattern.pattern, str) or pattern.flags & (re.ASCII | re.LOCALE):
        return ()
    try:
        parsed = _parser.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError):
        return ()
    if parsed.state.flags & (re.ASCII | re.LOCALE):
        return ()
    try:
        found = _requirements(list(parsed.data), False, False)
    except _Unknown:
        return ()
    strongest: list[_Atoms] = []
    for atoms in sorted(set(found), key=lambda atoms: (_strength(atoms), sorted(atoms)), reverse=True):
        # The strongest need, and the next ones that rule out more: not "a" nor "canc" after "cancel".
        if not strongest or (_strength(atoms)[0] >= _MIN_STRENGTH and not any(_implies(s, atoms) for s in strongest)):
            strongest.append(atoms)
    strongest = strongest[:MAX_NEEDS]
    return tuple(Need(whole=frozenset(text for kind, text in atoms if kind == WHOLE),
                      starts=tuple(sorted(text for kind, text in atoms if kind == START)),
                      parts=tuple(sorted(text for kind, text in atoms if kind == PART)))
                 for atoms in strongest)


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


def _requirements(items: _Items, starts: bool, ends: bool, lead: tuple[str, bool] | None = None) -> list[_Atoms]:
    """Requirements that every match of a concatenation meets (each a set of atoms, one of which holds).

    ``starts``/``ends``: whether the sequence is known to begin or end at a word boundary. ``lead``:
    the literal right before it and whether that starts at a boundary, for an alternative of
    ``(cancel|cancl)``, which the parser reads as ``canc(el|l)``: a literal it starts with joins it."""
    found: list[_Atoms] = []
    index = 0
    while index < len(items):
        if not _is_word_literal(items[index]):
            found.extend(_node(items, index, starts, ends))
            index += 1
            continue
        end = index
        while end + 1 < len(items) and _is_word_literal(items[end + 1]):
            end += 1
        literal = fold("".join(chr(code) for _, code in items[index : end + 1]))
        at_start = _bounded(items, index, -1, starts)
        if index == 0 and lead is not None:
            literal, at_start = lead[0] + literal, lead[1]
        at_end = _bounded(items, end, 1, ends)
        found.append(frozenset({(WHOLE if at_start and at_end else START if at_start else PART, literal)}))
        if end + 1 < len(items) and items[end + 1][0] is _C.BRANCH:
            found.extend(_node(items, end + 1, starts, ends, (literal, at_start)))
            end += 1
        index = end + 1
    return found


def _strongest(items: _Items, starts: bool, ends: bool, lead: tuple[str, bool] | None = None) -> _Atoms | None:
    found = _requirements(items, starts, ends, lead)
    return max(found, key=_strength) if found else None


def _node(items: _Items, index: int, starts: bool, ends: bool, lead: tuple[str, bool] | None = None) -> list[_Atoms]:
    """What one part of a concatenation needs: a group, alternatives, a repeat; nothing for the rest."""
    op, value = items[index]
    at_start, at_end = _bounded(items, index, -1, starts), _bounded(items, index, 1, ends)
    if op is _C.SUBPATTERN:
        _group, add_flags, del_flags, sub = value
        if (add_flags | del_flags) & (re.ASCII | re.LOCALE):
            raise _Unknown
        return _requirements(sub.data, at_start, at_end)
    if op is _C.ATOMIC_GROUP:
        return _requirements(value.data, at_start, at_end)
    if op is _C.BRANCH:
        union: set[tuple[str, str]] = set()
        for alternative in value[1]:
            atoms = _strongest(alternative.data, at_start, at_end, lead)
            if not atoms:
                return []  # this alternative may match without any literal
            union |= atoms
        return [frozenset(union)]
    if op in _REPEATS:
        low, high, sub = value
        # The first repetition starts where the repeat does; only a single one also ends where it does.
        return _requirements(sub.data, at_start, at_end and high == 1) if low >= 1 else []
    return []


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


def _implies(first: _Atoms, second: _Atoms) -> bool:
    """Whether a text meeting ``first`` always meets ``second`` ("cancel" starting a word: "canc" too)."""
    def follows(atom: tuple[str, str], other: tuple[str, str]) -> bool:
        (kind, text), (other_kind, other_text) = atom, other
        if other_kind == PART:
            return other_text in text
        if other_kind == START:
            return kind != PART and text.startswith(other_text)
        return kind == WHOLE and text == other_text

    return all(any(follows(atom, other) for other in second) for atom in first)


def _strength(atoms: _Atoms) -> tuple[int, int]:
    """How rarely a requirement holds, roughly: its shortest literal (a whole word counts 2 more), then fewer."""
    shortest = min(len(text) + (2 if kind == WHOLE else 0) for kind, text in atoms)
    return shortest, -len(atoms)
