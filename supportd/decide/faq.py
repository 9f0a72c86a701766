"""The shop's FAQ: the same dozen questions, answered at once in the shop's own words.

FAQ entries live in the rule folder (``rules/60-faq-*.yaml``), one file per topic, so they are read,
checked (``file:line``), reloaded and explained (``supportd try``, the digest) exactly like the
rules, in the same condition language:

    faq: payment                       # the topic
    entries:
      - name: payment-en
        language: en                   # the customer's language this answer is written in
        message: {regex: ['\\bpayment (method|option)s?\\b']}
        answer: |                      # a Jinja2 template (sandboxed), in the shop's voice
          We accept PayPal, credit cards and bank transfer.

An entry whose ``answer`` is empty is the owner's to fill in: ``supportd check`` lists it, and until
then it never sends. Which entry answers: the first one, in file order, whose conditions match,
trying the entries in the customer's language first; when the match is in another language and the
same topic has a filled answer in the customer's language, that answer goes out instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supportd.decide.rules import Condition, Hit, View

DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class FaqEntry:
    name: str
    topic: str
    language: str
    condition: Condition
    answer: str | None  # None: not written yet, so it never sends
    where: str

    @property
    def filled(self) -> bool:
        return self.answer is not None


@dataclass(frozen=True)
class FaqMatch:
    """What the FAQ makes of a message: the entry whose answer goes out (None when only entries
    without an answer matched), the entry whose conditions matched, and why."""

    entry: FaqEntry | None
    matched: str
    why: str
    unfilled: tuple[str, ...] = ()


@dataclass
class FaqSet:
    entries: list[FaqEntry] = field(default_factory=list)

    def unfilled(self) -> list[FaqEntry]:
        return [e for e in self.entries if not e.filled]

    def match(self, view: View, language: str, explain: Callable[[View, list[Hit]], str]) -> FaqMatch | None:
        """The answer for this message, or None when no entry's conditions hold.

        ``explain`` puts a match in words (the rules' own, so ``try`` reads the same for both)."""
        matched: list[tuple[FaqEntry, list[Hit]]] = []
        for entry in _in_language_first(self.entries, language):
            hits = entry.condition.hits(view)
            if hits is not None:
                matched.append((entry, hits))
        if not matched:
            return None
        unfilled = tuple(e.name for e, _ in matched if not e.filled)
        filled = [(e, hits) for e, hits in matched if e.filled]
        if not filled:
            first, hits = matched[0]
            return FaqMatch(None, first.name, explain(view, hits), unfilled)
        entry, hits = filled[0]
        answer = self._in_language(entry, language)
        return FaqMatch(answer, entry.name, explain(view, hits), unfilled)

    def _in_language(self, entry: FaqEntry, language: str) -> FaqEntry:
        """The same topic's answer in the customer's language, where the owner wrote one."""
        if entry.language == language:
            return entry
        return next((e for e in self.entries if e.topic == entry.topic and e.language == language and e.filled),
                    entry)


def _in_language_first(entries: Iterable[FaqEntry], language: str) -> list[FaqEntry]:
    entries = list(entries)
    return [e for e in entries if e.language == language] + [e for e in entries if e.language != language]
