"""What mail nothing understood says: its telling words and its question, for the digest.

The pipeline stores them with each such message (only such mail keeps any words); the digest
groups them into "candidates for a new rule" and "questions no FAQ entry answers".
"""

from __future__ import annotations

import re
from collections import Counter

STOPWORDS = frozenset("""
    a an and are as at be but by can could do for from have hello hi how i if in is it its me my no not of
    on or our please so thanks thank that the there this to was we what when where which will with would
    you your yours am been did does just get got dear regards best like want need know also some them they
    their then than here very much many more only into about after before could should shall okay sure
    kind cheers greetings sincerely thankyou hallo bitte danke eine einen einem haben habe nicht oder
    und ich wir sie ihr mein meine your have been were this that these those would there here
""".split())


QUESTION_SENTENCE = re.compile(r"[^.!?\n]*\?")


def question_of(text: str, subject: str) -> str:
    """What a message asks, in its own words: its first question, else its subject or first line."""
    found = QUESTION_SENTENCE.search(text)
    if found and found.group().strip(" ?"):
        question = found.group()
    else:
        question = subject or next((line for line in text.splitlines() if line.strip()), "")
    return " ".join(question.split())[:140]


def common_questions(questions: list[str], limit: int = 5) -> list[tuple[str, int, list[str]]]:
    """The most common questions: (an example, how many, the words they share), most asked first.

    Questions that share two telling words ("gift vouchers for birthdays?", "are gift vouchers
    available?") count as one question asked twice.
    """
    groups: list[tuple[list[str], Counter[str]]] = []  # (the questions, how many of them use each word)
    for question in questions:
        words = set(keywords(question, 6))
        if not words:
            continue
        group = next((g for g in groups if len(words & set(g[1])) >= 2), None)
        if group is None:
            groups.append(([question], Counter(words)))
        else:
            group[0].append(question)
            group[1].update(words)
    ranked = sorted(groups, key=lambda g: -len(g[0]))
    return [(asked[0], len(asked), sorted(w for w, n in counts.items() if n > 1)) for asked, counts in ranked[:limit]]


def keywords(text: str, limit: int = 8) -> list[str]:
    """A few telling words of a message no rule understood, for the 'candidates for a rule' list."""
    words = [w for w in re.findall(r"[^\W\d_]{4,}", text.lower()) if w not in STOPWORDS]
    return [w for w, _ in Counter(words).most_common(limit)]
