"""Which language the customer wrote in, from their own words: English and German, and a few more.

A reply goes out in the customer's language when the shop has templates for it (``replies/de/``
beside ``replies/``), and in the shop's language otherwise. The customer's own words decide, never
the quoted history or signature (those may be ours). The method is deliberately small: count the
short, frequent words only one language uses ("the", "my", "is" against "der", "ich", "ist"). Two
such words and a clear lead are enough; a text too short to tell gives the default. Linear time:
the first ``MAX_CHARS`` characters are read.
"""

from __future__ import annotations

import re

MAX_CHARS = 5_000
MIN_HITS = 2
# Frequent words that mark one language and not the others listed (lower case, whole words).
MARKERS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the and is are was were my your our you have has had not this that with for from what where when "
        "how why would could should please thanks thank hello dear order arrived yet it of to".split()
    ),
    "de": frozenset(
        "der die das und ist sind war mein meine meinen meinem ihr ihre ich sie nicht mit für von "
        "wo wann wie warum bitte danke hallo sehr geehrte bestellung noch kein keine ein eine auch "
        "aber habe haben wurde bleibt schon".split()
    ),
    "fr": frozenset(
        "le la les et est sont mon ma mes votre vous je pas avec pour une bonjour merci commande "
        "où quand comment pourquoi".split()
    ),
    "es": frozenset(
        "el los las y es son mi mis su usted yo con para una hola gracias pedido dónde cuándo "
        "cómo por qué".split()
    ),
    "nl": frozenset(
        "de het en is zijn mijn uw jij ik niet met voor een hallo bedankt bestelling waar wanneer "
        "hoe waarom".split()
    ),
}
_WORD = re.compile(r"[^\W\d_]+")
# Each marker word and the languages it marks ("is": en and nl): one lookup a word, not one a language.
_LANGUAGES_OF: dict[str, tuple[str, ...]] = {
    word: tuple(language for language, markers in MARKERS.items() if word in markers)
    for word in frozenset().union(*MARKERS.values())
}


def detect_language(text: str, default: str) -> str:
    """The language code ("en", "de", ...) the text is written in, or ``default`` when unsure."""
    counts = dict.fromkeys(MARKERS, 0)
    languages_of = _LANGUAGES_OF
    for word in _WORD.findall(text[:MAX_CHARS].lower()):
        for language in languages_of.get(word, ()):
            counts[language] += 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    (best, hits), (_, runner_up) = ranked[0], ranked[1]
    if hits < MIN_HITS or hits <= runner_up:
        return default
    return best
