"""How ``REAL_WORDS`` in ``supportd/decide/spelling.py`` was found (run by hand, not part of supportd).

Real English and German words (seen at least 30 times in pyspellchecker's frequency lists, five
letters or more) that ``Spelling`` would otherwise read as a typo of one of the default
``typo_words``. Needs ``pip install pyspellchecker==0.9.1`` in a throwaway venv:

    /tmp/spellenv/bin/python scripts/derive_real_words.py rules/00-language.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from spellchecker import SpellChecker  # type: ignore[import-not-found]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from supportd.decide.spelling import MIN_LETTERS, allowed_edits, edit_distance

MIN_FREQUENCY = 30


def near(word: str, rule_word: str) -> bool:
    first_ok = word[0] == rule_word[0] or word[:2] == rule_word[1::-1]
    return (first_ok and abs(len(word) - len(rule_word)) <= allowed_edits(rule_word)
            and edit_distance(word, rule_word) <= allowed_edits(rule_word))


def main(language_file: str) -> None:
    rule_words = yaml.safe_load(Path(language_file).read_text(encoding="utf-8"))["language"]["typo_words"]
    found: set[str] = set()
    for language in ("en", "de"):
        frequencies = SpellChecker(language=language).word_frequency.dictionary
        for word, count in frequencies.items():
            common = count >= MIN_FREQUENCY and len(word) >= MIN_LETTERS and word.isalpha()
            if common and word not in rule_words and any(near(word, rule_word) for rule_word in rule_words):
                found.add(word)
    print(" ".join(sorted(found)))


if __name__ == "__main__":
    main(sys.argv[1])
