"""Is this a clear request, or a side remark? The sentence around a mention decides.

One shop cancelled a subscription because a customer wrote she was "thinking of unsubscribing".
supportd reads the sentence that holds the mention of an irreversible change and calls it a clear
request only when the sentence asks for it ("please cancel my order", "unsubscribe me", "I want to
cancel order 77120") and nothing qualifies it:

* a negation of the mention: before it in its clause ("I don't want to cancel"), inside it
  ("mein Abo nicht kündigen") or right after it ("Unsubscribing is not what I want");
* a musing or hypothetical anywhere in the sentence: "I'm thinking of unsubscribing", "I might cancel";
* a condition on the customer's own act: "what happens if I cancel?", "if this isn't fixed I'll cancel";
* a question about the process: "how do I cancel?", "can you tell me how to cancel?".

A sentence asks when it says so ("please", "I want to"), when the mention opens it as an imperative
("Cancel my order"), when the mention is itself a refusal ("I don't want your emails"), or when it
is a polite question that asks *us* to act ("could you cancel my order?"). The words for each of
these live in ``rules/00-language.yaml``, so the owner can add their customers' phrasing. Words in
quoted text and signatures never get here: ``supportd.intake.owntext`` cut them away before. How several
mentions in one message (and one in the subject) add up is decided in ``supportd.decide.rules``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from supportd.decide.wordlists import compile_words

EXPLICIT = "explicit"
NEGATED = "negated"
MUSING = "musing"
CONDITIONAL = "conditional"
QUESTION = "question"
STATEMENT = "statement"

CLAUSE_BREAK = re.compile(r"[,;:()\u2013\u2014]|\s-\s|\b(?:but|so|because|as|since|though|although)\b",
                          re.IGNORECASE)
# After the mention, a negation still belongs to it until a new clause or subject starts:
# "Unsubscribing is not what I want", "ich kündige mein Abo nicht"; but not in "please cancel the
# order that has not shipped".
NEW_SUBJECT = re.compile(r"\b(?:that|which|who|whom|whose|what|where|when|while|if|unless|and|or|it|i|you|he|she|"
                         r"we|they|dass|das|die|der|ich|es|er|wir|und|oder|weil|wenn|falls)\b", re.IGNORECASE)
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
    not_helped: re.Pattern[str] = _NEVER  # a reply to an FAQ answer that says it did not help
    helped: re.Pattern[str] = _NEVER  # ... or that it did ("thanks, that helped")

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
            not_helped=words("not_helped"),
            helped=words("helped"),
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
    """What the sentence does with the mention at ``sentence[start:end]``: one of the kinds above.

    The checks run from the strongest reason *not* to act to the weakest; only a sentence that
    passes them all and asks for the change is ``EXPLICIT``.
    """
    clause_start, clause_end = clause_around(sentence, start)
    condition = language.conditions.search(sentence, clause_start, start)
    negation = _negation_of_mention(sentence, start, end, (clause_start, clause_end), language)
    if negation is not None and not (condition and condition.start() < negation):
        return NEGATED  # "I don't want to cancel" (but "if it doesn't arrive, I'll cancel" is a condition)
    if language.musings.search(sentence):
        return MUSING
    polite = language.polite_questions.search(sentence) is not None
    asks = (polite or language.requests.search(sentence) is not None
            or _worded_as_refusal(sentence[start:end], language) or _starts_with_mention(sentence, start))
    if condition or (language.conditions.search(sentence) and not asks):
        return CONDITIONAL  # "what happens if I cancel?", "if this isn't fixed I'll cancel"
    if language.process_questions.search(sentence, 0, start) or (
        not polite and (language.process_questions.search(sentence) or sentence.rstrip().endswith("?"))
    ):
        return QUESTION  # "how do I cancel?", "can you tell me how to cancel?"; "could you cancel it?" asks
    return EXPLICIT if asks else STATEMENT



def _negation_of_mention(sentence: str, start: int, end: int, clause: tuple[int, int],
                         language: Language) -> int | None:
    """Where a negation of the mention starts, or None: before it in its clause ("I don't want to
    cancel"), inside it ("mein Abo nicht kündigen"), or right after it ("kündige mein Abo nicht")."""
    clause_start, clause_end = clause
    for before in language.negations.finditer(sentence, clause_start, start):
        if not _not_a_negation_of(sentence, before, start, language):
            return before.start()
    inside = [m for m in language.negations.finditer(sentence, start, end) if m.start() > start]
    if inside:
        return inside[0].start()  # a leading negation is the rule's own words: "don't want your emails"
    stop = NEW_SUBJECT.search(sentence, end, clause_end)
    after = language.negations.search(sentence, end, stop.start() if stop else clause_end)
    return after.start() if after is not None else None


def _not_a_negation_of(sentence: str, negation: re.Match[str], start: int, language: Language) -> bool:
    """A negation before the mention that is not about it: part of a question about the process
    ("I don't know how to cancel"), or followed by a request of its own ("I do not want this item,
    I wanna cancel the order")."""
    question = language.process_questions.search(sentence, max(0, negation.start() - 2), start)
    if question is not None and question.start() <= negation.end():
        return True
    return language.requests.search(sentence, negation.end(), start) is not None


def _worded_as_refusal(mention: str, language: Language) -> bool:
    """A mention that is itself a refusal asks for the change: "don't want your emails", "no more emails"."""
    return language.negations.match(mention) is not None


def _starts_with_mention(sentence: str, start: int) -> bool:
    """An imperative: the mention opens the sentence ('Cancel my order', 'Yes, unsubscribe me')."""
    greeting = GREETING.match(sentence)
    opening = greeting.end() if greeting else 0
    return not sentence[opening:start].strip(" \t\n,.!:-")


def reservation(text: str, language: Language) -> str | None:
    """The first sign in ``text`` that the customer is not (yet) asking: a negation, a musing, a
    condition or a question about the process, as the kind it makes of a mention; None when none."""
    for kind, pattern in ((NEGATED, language.negations), (MUSING, language.musings),
                          (CONDITIONAL, language.conditions), (QUESTION, language.process_questions)):
        if pattern.search(text):
            return kind
    return None


def is_short_command(text: str, start: int, end: int, language: Language, max_words: int = 6) -> bool:
    """A message that is little more than the mention ('Unsubscribe', 'I unsubscribe', 'cancel order
    77120'), with nothing around it that takes it back ('Unsubscribing? Not yet.')."""
    around = f"{text[:start]} {text[end:]}"
    return (start <= 2 and len(text.split()) <= max_words and "?" not in text
            and reservation(around, language) is None)


YES, NO, UNCLEAR = "yes", "no", "unclear"

# Words that look like a "no" but are not one: "no problem", "order no. 77120", and a reason for the
# change ("I don't need it anymore") rather than a refusal of it. Politeness that is not a condition
# ("if possible") goes too.
NOT_A_REFUSAL = re.compile(
    r"\bno\s+(?:problem|problems|worries|rush|hurry)\b|\bno\.?\s*#?\s*\d"
    r"|\b(?:do\s*n[o']?t|no\s+longer)\s+(?:really\s+)?(?:need|want|use)\s+(?:it|this|that|them|these|those)"
    r"(?:\s+(?:any\s*more|now|at\s+all))?(?=\s*(?:[.,;!\n]|$))"
    r"|\b(?:if|when|as\s+soon\s+as)\s+(?:possible|you\s+can|you\s+could)\b",
    re.IGNORECASE,
)
SALUTATION = re.compile(r"^\s*(?:(?:hi|hello|hey|dear|good\s+(?:morning|afternoon|evening))\b[^,.!:\n]{0,40}"
                        r"[,.!:\n]\s*)+", re.IGNORECASE)


def confirmation_answer(own_text: str, language: Language, restates_request: bool = False) -> str:
    """How a customer's reply answers our 'please confirm' request: 'yes', 'no' or 'unclear'.

    Only the customer's own words count (quoted text was cut away before). Getting it wrong costs
    differently each way: a wrong "yes" does something that cannot be undone, a wrong "unclear"
    costs one more question. So:

    * a refusal that opens the reply ("No, don't cancel", "Nein", "Please don't") is a no;
    * a yes ("Yes, cancel it", "Confirmed", "Oui") is a yes only when nothing in the reply pulls the
      other way: no refusal or negation ("please do NOT cancel"), no question, no musing ("not sure
      yet"), no condition ("yes, if it has not shipped");
    * ``restates_request`` (the reply itself clearly asks for the same change, "Please cancel it")
      counts as a yes on the same terms;
    * a refusal or negation with no yes anywhere is a no; everything else is unclear.
    """
    text = NOT_A_REFUSAL.sub(" ", own_text.replace("\u2019", "'").strip())
    if not text.strip():
        return UNCLEAR
    salutation = SALUTATION.match(text)
    opening = text[salutation.end() if salutation else 0 :]
    if _opens_with(language.refusals, opening):
        return NO
    refusals = [m.start() for m in language.refusals.finditer(text)]
    negations = [m.start() for m in language.negations.finditer(text)]
    affirmations = [m for m in language.affirmations.finditer(text) if not _negated_after(text, m, language)]
    if refusals or negations:
        return UNCLEAR if affirmations or language.musings.search(text) else NO
    doubt = "?" in text or language.musings.search(text) or language.conditions.search(text)
    if (affirmations or restates_request) and not doubt:
        return YES
    return UNCLEAR


def _negated_after(text: str, found: re.Match[str], language: Language) -> bool:
    """'Please do NOT cancel', 'absolutely not': the yes-word is taken back in its own clause."""
    _, clause_end = clause_around(text, found.start())
    return language.negations.search(text, found.end(), clause_end) is not None


def _opens_with(pattern: re.Pattern[str], text: str) -> bool:
    found = pattern.search(text)
    return found is not None and not text[: found.start()].strip(" \t,.!:-\n")
