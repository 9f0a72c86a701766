"""Is this a clear request, or a side remark? The sentence around a mention decides.

One shop cancelled a subscription because a customer wrote she was "thinking of unsubscribing".
supportd reads the sentence that holds the mention of an irreversible change and calls it a clear
request only when the sentence asks for it ("please cancel my order", "unsubscribe me", "I want to
cancel order 77120") and nothing qualifies it:

* a negation before the mention in the same clause: "I don't want to cancel";
* a musing or hypothetical: "I'm thinking of unsubscribing", "I might cancel";
* a condition on the customer's own act: "what happens if I cancel?", "if this isn't fixed I'll cancel";
* a question about the process: "how do I cancel?", "is there a fee if I cancel?".

A polite question that asks *us* to act ("could you cancel my order?") is a request. The words
for each of these live in ``rules/00-language.yaml``, so the owner can add their customers' phrasing.
Words in quoted text and signatures never get here: ``supportd.owntext`` cut them away before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from supportd.wordlists import compile_words

EXPLICIT = "explicit"
NEGATED = "negated"
MUSING = "musing"
CONDITIONAL = "conditional"
QUESTION = "question"
STATEMENT = "statement"

CLAUSE_BREAK = re.compile(r"[,;:()\u2013\u2014]|\s-\s|\b(?:but|so|because|as|since|though|although)\b",
                          re.IGNORECASE)
GREETING = re.compile(r"^\s*(?:(?:hi|hello|hey|dear\s+\w+|good\s+(?:morning|afternoon|evening)|"
                      r"yes|ok|okay|so|and|also|then|now)\b[\s,!.:-]*)+", re.IGNORECASE)

_NEVER = re.compile(r"(?!)")


@dataclass(frozen=True)
class Language:
    """The owner's words for requests and for what makes a mention *not* a request."""

    requests: re.Pattern[str]
    polite_questions: re.Pattern[str]
    negations: re.Pattern[str]
    musings: re.Pattern[str]
    conditions: re.Pattern[str]
    process_questions: re.Pattern[str]
    affirmations: re.Pattern[str]
    refusals: re.Pattern[str]
    anger: re.Pattern[str]
    repeat_contact: re.Pattern[str]
    order_number: re.Pattern[str]

    @classmethod
    def from_lists(cls, lists: dict[str, list[str]], order_number: str) -> Language:
        def words(name: str) -> re.Pattern[str]:
            return compile_words(lists.get(name, [])) or _NEVER

        return cls(
            requests=words("requests"),
            polite_questions=words("polite_questions"),
            negations=words("negations"),
            musings=words("musings"),
            conditions=words("conditions"),
            process_questions=words("process_questions"),
            affirmations=words("affirmations"),
            refusals=words("refusals"),
            anger=words("anger"),
            repeat_contact=words("repeat_contact"),
            order_number=re.compile(order_number, re.IGNORECASE),
        )


def clause_around(sentence: str, start: int) -> tuple[int, int]:
    """The span of the clause that holds position ``start`` (clauses end at commas, 'but', ...)."""
    clause_start, clause_end = 0, len(sentence)
    for brk in CLAUSE_BREAK.finditer(sentence):
        if brk.end() <= start:
            clause_start = brk.end()
        elif brk.start() >= start:
            clause_end = brk.start()
            break
    return clause_start, clause_end


def classify(sentence: str, start: int, end: int, language: Language) -> str:
    """What the sentence does with the mention at ``sentence[start:end]``: one of the kinds above."""
    clause_start, _ = clause_around(sentence, start)
    before_in_clause = sentence[clause_start:start]
    if language.negations.search(before_in_clause):
        return NEGATED
    if language.musings.search(sentence):
        return MUSING
    if _condition_on_mention(sentence, start, language):
        return CONDITIONAL
    polite = language.polite_questions.search(sentence)
    if language.process_questions.search(sentence) and not polite:
        return QUESTION
    if sentence.rstrip().endswith("?") and not polite:
        return QUESTION
    if polite or language.requests.search(sentence) or _starts_with_mention(sentence, start):
        return EXPLICIT
    return STATEMENT


def _condition_on_mention(sentence: str, start: int, language: Language) -> bool:
    """'if I cancel', 'what happens when I unsubscribe': a condition that leads up to the mention.

    A condition elsewhere ("please cancel it if it has not shipped") leaves the request standing
    when the sentence also asks for it.
    """
    clause_start, _ = clause_around(sentence, start)
    if language.conditions.search(sentence[clause_start:start]):
        return True
    condition = language.conditions.search(sentence)
    return bool(condition) and not language.requests.search(sentence) and not language.polite_questions.search(
        sentence
    )


def _starts_with_mention(sentence: str, start: int) -> bool:
    """An imperative: the mention opens the sentence ('Cancel my order', 'Yes, unsubscribe me')."""
    greeting = GREETING.match(sentence)
    opening = greeting.end() if greeting else 0
    return not sentence[opening:start].strip(" \t,.!:-")


def is_short_command(text: str, start: int, end: int, max_words: int = 6) -> bool:
    """A message that is little more than the mention ('Unsubscribe', 'cancel order 77120')."""
    return start <= 2 and len(text.split()) <= max_words


def confirmation_answer(own_text: str, language: Language) -> str:
    """How a customer's reply answers our 'please confirm' request: 'yes', 'no' or 'unclear'.

    Only the customer's own words count (quoted text was cut away before). The opening words
    decide ("Yes, cancel it", "No, don't"); otherwise a yes or a no anywhere, but not both. A
    question or a musing ("not sure yet") is unclear: we ask once more rather than guess.
    """
    text = own_text.strip()
    if not text or language.musings.search(text):
        return "unclear"
    greeting = GREETING.match(text)
    opening = text[greeting.end() if greeting else 0 :]
    if _opens_with(language.refusals, opening):
        return "no"
    if _opens_with(language.affirmations, opening) or (greeting and greeting.group().lower().startswith(("yes", "ok"))):
        return "unclear" if "?" in text else "yes"
    says_yes = language.affirmations.search(text)
    says_no = language.refusals.search(text)
    if says_no and not says_yes:
        return "no"
    if says_yes and not says_no and "?" not in text:
        return "yes"
    return "unclear"


def _opens_with(pattern: re.Pattern[str], text: str) -> bool:
    found = pattern.search(text)
    return found is not None and not text[: found.start()].strip(" \t,.!:-")
