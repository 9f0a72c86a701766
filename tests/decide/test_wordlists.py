"""Owner-written words as the rules match them: whole words, any case, apostrophes and '*' as documented."""

from __future__ import annotations

import pytest

from supportd.decide.wordlists import compile_words


@pytest.mark.parametrize(("words", "text", "found"), [
    (["broken"], "The mug arrived BROKEN.", "BROKEN"),
    (["where is my"], "where   is\nmy parcel", "where   is\nmy"),
    (["don't"], "I dont want it", "dont"),
    (["don't"], "I don’t want it", "don’t"),
    (["unsubscrib*"], "Unsubscribing, please", "Unsubscribing"),
    (["kündig*"], "Ich kündige mein Abo", "kündige"),
    (["cancel", "cancel my order"], "please cancel my order", "cancel my order"),
])
def test_words_match_as_the_readme_says(words: list[str], text: str, found: str) -> None:
    """Any case, any spacing, ' for ’ or nothing, '*' for the rest of a word, the longest phrase first."""
    pattern = compile_words(words)
    assert pattern is not None
    match = pattern.search(text)
    assert match is not None and match.group() == found


@pytest.mark.parametrize(("words", "text"), [
    (["cancel"], "the cancellation fee"),
    (["art"], "the cart is empty"),
    (["not"], "nothing arrived"),
])
def test_words_never_match_inside_other_words(words: list[str], text: str) -> None:
    """'cancel' does not find 'cancellation', 'art' does not find 'cart'."""
    pattern = compile_words(words)
    assert pattern is not None and pattern.search(text) is None


def test_an_empty_list_matches_nothing() -> None:
    """A list with no words gives no pattern (the rule checker reports it)."""
    assert compile_words([]) is None
    assert compile_words(["  "]) is None


def test_regex_characters_in_words_are_plain_text() -> None:
    """A word like 'c++' or '(gift)' is looked for as written, never read as a regular expression."""
    pattern = compile_words(["c++ book", "(gift)"])
    assert pattern is not None
    assert pattern.search("my c++ book arrived") and pattern.search("a (gift) box")
    assert not pattern.search("a gift box")
