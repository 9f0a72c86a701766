"""The rules' literal prefilter skips only scans that would find nothing: every decision stays the same."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supportd.decide import guard
from supportd.decide.prefilter import Prefilter, fold, is_word_letter, needs_of, pattern_key
from supportd.decide.rules import text_patterns
from supportd.decide.wordlists import compile_words
from supportd.quality.intents import DEV_SET, as_email, default_rules, read_examples

from conftest import need_corpus_file

RULES = default_rules()
PATTERNS = [p for c in [r.condition for r in RULES.rules] + [e.condition for e in RULES.faq.entries]
            for p in text_patterns(c)]
# Characters the engine matches to ASCII letters case-insensitively: Kelvin sign, dotted and dotless i, long s.
LOOKALIKES = {"k": "\u212a", "i": "\u0130\u0131", "s": "\u017f"}


def literals() -> list[str]:
    """The words the rules look for, as the prefilter reads them."""
    found: set[str] = set()
    for pattern in PATTERNS:
        for need in needs_of(pattern):
            found |= need.whole | set(need.starts) | set(need.parts)
    return sorted(found)


WORDS = literals()


def near(word: str, how: int, where: int) -> str:
    """A word a customer might type instead: a letter dropped, doubled or swapped, an ending, odd case."""
    where %= max(len(word), 1)
    variants = [
        word[:where] + word[where + 1 :],
        word[:where] + word[where : where + 1] * 2 + word[where + 1 :],
        word[:where] + word[where + 1 : where + 2] + word[where : where + 1] + word[where + 2 :],
        word + "ing", word + "s", "un" + word, word.upper(), word.title(),
        "".join(LOOKALIKES.get(c, c)[:1] for c in word), word.replace("i", "\u0131").replace("s", "\u017f"),
    ]
    return variants[how % len(variants)]


TOKENS = st.one_of(
    st.sampled_from(WORDS),
    st.builds(near, st.sampled_from(WORDS), st.integers(0, 9), st.integers(0, 30)),
    st.sampled_from(["my", "the", "is", "not", "order", "where", "I", "you", "77120", "don't", "can’t", "e-mail"]),
    st.text(alphabet="abcdeiklnorstuäößü\u0130\u212a", min_size=1, max_size=8),
)
GLUE = st.sampled_from([" ", " ", " ", "\n", "", "-", ". ", "? ", "'", "  \n", "_", "#", "3"])
TEXTS = st.lists(st.tuples(TOKENS, GLUE), max_size=30).map(lambda parts: "".join(t + g for t, g in parts))


def missed(patterns: list[re.Pattern[str]], text: str, prefilter: Prefilter | None = None) -> list[str]:
    """The patterns that match ``text`` although the prefilter rules them out (must be none)."""
    ruled_out = (prefilter or Prefilter(patterns)).ruled_out(text)
    return [p.pattern for p in patterns if pattern_key(p) in ruled_out and p.search(text)]


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_no_rule_pattern_that_matches_is_ever_ruled_out(text: str) -> None:
    """For texts of rule words, near-words and noise, every rule and FAQ pattern that matches is still run
    (by the rule set's own prefilter, which keeps what it found for a word from text to text)."""
    assert missed(PATTERNS, text, RULES.prefilter) == []


# Owner-written regular expressions of the kinds the rules use, built at random.
PIECES = st.one_of(
    st.sampled_from(WORDS[:200]),
    st.sampled_from([r"\b", r"\s+", r"\s*", " ", r"\w*", r"\w+", "[^.?!\n]{0,20}", ".{0,5}", "-?", "(?<![\\w])",
                     "(?![\\w])", "(?=[a-z])", "s?", "[a-z]", r"\d+", "'?", "#", "(?:x|)", r"\B", "$", "^"]),
)


@st.composite
def regexes(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            alternatives = draw(st.lists(regexes(depth + 1), min_size=1, max_size=3))
            quantifier = draw(st.sampled_from(["", "", "?", "{1,2}", "{2}"]))  # bounded: no catastrophic backtracking
            parts.append("(" + "|".join(alternatives) + ")" + quantifier)
        else:
            parts.append(draw(PIECES))
    return "".join(parts)


def matching_text(data: st.DataObject, pattern: re.Pattern[str]) -> str:
    """A text around something the pattern is made to match (any case, any Unicode).

    from_regex cannot satisfy a word list's look-arounds (``(?=[cw])(?<![\\w])...(?![\\w])``): it makes
    texts from the same pattern with ``\\b`` for them."""
    source = re.sub(r"^\(\?=\[[^\]]*\]\)\(\?<!\[\\w\]\)", r"\\b", pattern.pattern).replace(r"(?![\w])", r"\b")
    made = st.from_regex(re.compile(source, pattern.flags)).map(lambda found: found.strip("\n"))  # $ allows a \n
    return data.draw(st.tuples(TEXTS, made, TEXTS).map("".join))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_texts_made_to_match_rule_patterns_are_never_ruled_out(data: st.DataObject) -> None:
    """A text built from a rule or FAQ pattern itself (hypothesis' from_regex): what matches is still run."""
    text = matching_text(data, data.draw(st.sampled_from(PATTERNS)))
    assert missed(PATTERNS, text) == []


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_texts_made_to_match_the_guards_text_patterns_are_never_ruled_out(data: st.DataObject) -> None:
    """The guard's robot texts (a bounce's wording, a challenge, a bulk footer): what matches is still run."""
    patterns = [guard.DELIVERY_REPORT_TEXT, guard.CHALLENGE_TEXT, guard.BULK_TEXT]
    text = matching_text(data, data.draw(st.sampled_from(patterns)))
    assert missed(patterns, text, guard._text_prefilter()) == []


@settings(max_examples=200, deadline=None)
@given(st.data(), regexes(), st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
def test_random_patterns_and_word_lists_that_match_are_never_ruled_out(
        data: st.DataObject, source: str, phrases: list[str]) -> None:
    """Random regexes (groups, repeats, look-arounds, \\b) and word lists: the prefilter never hides a match."""
    words = compile_words([p + "*" if len(p) % 3 == 0 else p for p in phrases])
    assert words is not None
    for pattern in (re.compile(source, re.IGNORECASE), words):
        text = matching_text(data, pattern)
        match = pattern.search(text)
        if match is not None:
            assert missed([pattern], text) == [], (pattern.pattern, match.group())


def test_case_folding_is_the_engines() -> None:
    """Every character the engine matches to a pattern letter, ignoring case, is a word character of the
    same fold (e.g. 'ſ' for 's', the Kelvin sign for 'k'), so its word is found by its folded form."""
    letters = [chr(code) for code in range(0x250) if is_word_letter(chr(code))]
    # Only characters with a case mapping can match another one; the rest match only themselves.
    cased = "".join(c for c in map(chr, range(0x110000)) if not 0xD800 <= ord(c) < 0xE000
                    and (c.lower() != c or c.upper() != c or c.casefold() != c))
    for letter in letters:
        for found in re.findall(re.escape(letter), cased + letter, re.IGNORECASE):
            assert re.fullmatch(r"\w", found) and fold(found) == fold(letter), (letter, found)


@pytest.mark.parametrize(("pattern", "needs"), [
    (r"\bwrong\s+(item|size|colou?r)\b", [({"wrong"}, (), ()), ({"item", "size"}, ("colo",), ())]),
    (r"\b(cancel|storn)\w*", [(set(), ("cancel", "storn"), ())]),
    (r"(?<![\w])(?:where\s++is\s++my|lost parcel)(?![\w])", [({"where", "parcel"}, (), ())]),
    (r"p\w?a\w?yment", [(set(), (), ("yment",))]),
    (r"\b(stays|is)\s+(grey|gray)\b", [({"grey", "gray"}, (), ()), ({"stays", "is"}, (), ())]),
    (r"\b(cancel|cancl)\w*\s+(it|this)\b", [(set(), ("cancel", "cancl"), ()), ({"it", "this"}, (), ())]),
])
def test_what_a_pattern_needs(pattern: str, needs: list[tuple[set[str], tuple[str, ...], tuple[str, ...]]]) -> None:
    """A whole word where \\b or a space bounds it, a word's start where only its start is bounded;
    every part of a sequence that needs a word is a need of its own, the strongest first."""
    found = needs_of(re.compile(pattern, re.IGNORECASE))
    assert [(need.whole, need.starts, need.parts) for need in found] == needs


@pytest.mark.parametrize("pattern", [
    r"(?a)\bwrong\b", r"\b(item|\w+)\b", r"(wrong)?\s*(size)?", r"(?=cancel)", r"(\w)\1", r"[a-z]+\d",
])
def test_patterns_it_cannot_read_always_run(pattern: str) -> None:
    """ASCII word boundaries, an alternative without a literal, optional parts, look-arounds: no need, a scan."""
    compiled = re.compile(pattern, re.IGNORECASE)
    assert needs_of(compiled) == ()
    assert Prefilter([compiled]).ruled_out("nothing to see") == frozenset()


def test_decisions_with_the_prefilter_are_the_decisions_without_it() -> None:
    """On the dev set every decision (intents, rule, why, mentions, FAQ answer) is the same with and without it."""
    without = default_rules()
    without.prefilter = None
    for example in read_examples(need_corpus_file(DEV_SET))[::3]:
        message = as_email(example.text)
        assert RULES.decide(message) == without.decide(message), example.text


def test_a_pickled_rule_set_decides_the_same_and_still_filters() -> None:
    """A read-ahead process gets the rules pickled: its copy rules out the same patterns and decides the same."""
    copy = pickle.loads(pickle.dumps(RULES))
    assert copy.prefilter is not None and RULES.prefilter is not None
    for example in read_examples(need_corpus_file(DEV_SET))[:300]:
        message = as_email(example.text)
        assert copy.prefilter.ruled_out(example.text) == RULES.prefilter.ruled_out(example.text)
        assert copy.decide(message) == RULES.decide(message), example.text


def test_a_reloaded_rule_set_filters_its_own_patterns(tmp_path: Path) -> None:
    """Rules read again (SIGHUP, an edited file) get a prefilter of their own patterns."""
    reloaded = default_rules()
    assert reloaded.prefilter is not RULES.prefilter
    message = as_email("The mug arrived broken, the handle is cracked.")
    assert reloaded.decide(message).primary_intent == "defect"
