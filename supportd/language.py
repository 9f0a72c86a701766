"""Which language a customer writes in: English or German, from the words they use.

A small placeholder until the full language support lands: it counts common function words of
each language in the customer's own text and falls back to ``default`` when neither clearly leads
(a one-word mail, an order number, a name).
"""

from __future__ import annotations

import re

_WORDS = re.compile(r"[^\W\d_]+")
COMMON_WORDS = {
    "en": frozenset("""the and is are you your my i we to of for in on it this that with have has can
                       how what where when do does not please thanks thank would could should order""".split()),
    "de": frozenset("""der die das und ist sind sie ihr ihre ich wir zu von für mit bei auf es dies
                       wie was wo wann nicht bitte danke vielen meine mein meinen können könnten
                       haben hat habe eine einen einem ein bestellung gibt""".split()),
}


def detect_language(text: str, default: str) -> str:
    """'en' or 'de' by the common words in ``text``; ``default`` when neither clearly leads."""
    words = [w.lower() for w in _WORDS.findall(text[:4000])]
    counts = {lang: sum(1 for w in words if w in common) for lang, common in COMMON_WORDS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    others = max(n for lang, n in counts.items() if lang != best)
    if counts[best] == 0 or counts[best] == others:
        return default
    return best
