"""Typos in the customer's words, read as the words the rules know: "cancfel" is "cancel".

Customers type fast: "cacnelling my purchqse", "teack order", "order113542617735902". Rules are
written for the right spelling, so before they run, each word of the customer's text that is one
edit away from a word the rules know (two for words of eight letters or more) is read as that
word, and a number glued to such a word is split off ("order 113542617735902"). An edit is a
letter added, dropped, changed, or two neighbours swapped; the first letter must be right (or
swapped with the second), as it almost always is.

A real word is never "corrected": "older" is not "order", "cancer" not "cancel". Those are the
words of ``REAL_WORDS`` (English and German words near the default typo words, see there) and the
owner's ``not_typos``. The rule words themselves are ``typo_words`` in ``rules/00-language.yaml``.

Cheap and linear: a word is looked up through the deletions of at most two letters (SymSpell's
idea), words are only read from the first ``MAX_CHARS`` characters, at most ``MAX_LOOKUPS`` new
words are looked up per text, and answers are cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import combinations

# Real words within the allowed edits of the default typo words, which must stay as they are.
# Derived from pyspellchecker 0.9.1's English and German frequency lists (words seen at least 30
# times, of five letters or more) by scripts/derive_real_words.py; not a dependency.
REAL_WORDS = frozenset("""
abonnements abonnent accounts archiving argive arising arraying arrives arrowing articled articles
atonement beistellung besiedlung bestallung bestechung besteigung bestellen bestellend bestellens
bestellnr bestellungen bestselling bestuhlung borken brocken broke broker brokern broten cackled
cackling cageling calculation canceler cancelers cancellations canceller cancellers cancer cancers
candled candling cankered cankering canoeing cantered cantering catcalled catcalling chancel
chancels chandelled chandelling changeling channeled channeling channelled channelling clacked
cloning closings cloying concealed concealing conceded conceding congelation cracker crackled
cranked cricked crocked damage damages debating debiting debuting deception deceptive deductive
deeding deeming defeating defecting defection defectively defectives defensive deflating deflation
deflecting deflection deflective dejecting dejection delate delaying delegating delegation deleon
deleted deletes deletions deliverer deliverers deliveries delivers deluding deluging delusion delver
delvers delving demoting demotion denoting denting deplete depleting depletion deputing deration
deserting desertion desexing despatched despatches detecting detection detective detectives
detektion detektive detention detesting devoting devotion dieting dilating dilation diluting
dilution directive dispatch dispatcher dispatchers dispatches geeifert gefiebert gefiedert
gegliedert geleert gelieferte geliefertem gelieferten gelieferter geliefertes gelindert gewiehert
gewienert gliedert kantigen kundige kundigem kundigen kundiger kundiges königen künden kündeten
kündige kündigend kündigende kündigens kündigst kündigt kündigte kündigten kündigtet kündigungen
künftigen leerung lieferant liefern liefernd lieferns lieferungen linderung lobate locale located
locater locates lochte lockte memberships newsletters odder older orden ordens ordere orderer ordern
ordernd orderst ordert ordner ordners ordre packaged packager packages packet pakete pakets pakte
parcels purchaser purchasers receded receipted receiver receivers receives recessed recited reclined
recoiled recurved reeved refound refunds relieved relived remote removals removed remover removes
reserved revived reweaved rewove sapping sending senkung shaping sharping shifting shilling shimming
shining shinning shipman shipments shippen shipper shirking shirring shirting shitting shlepping
shopped shopping shrimping sipped sipping skimping skipped skipping slapping slipped slipping
slopping snapping sniping snipped snipping sopping sortieren sortierung spendung stagnieren states
statius stats statue statues statur statut statuts staus stepping stippling stopping storniere
stornierend stornierende stornierens stornierst storniert stornierte storniertem stornierten
stornierter storniertes storniertet stornierungen stratus stripping subskription supping swapping
swiping swopping tacking tackling taking talking tanking tarmacking tasking teaching thanking
thwacking ticking trace traci tracing tracings trackings tracks tract tracy trading trailing
training tramming tramping trank trapping trashing trauring trawling trekking trick tricking
trickling truck trucking truckling trunking tucking unsubscribes
""".split())
MIN_LETTERS = 5
LONG_WORD = 8  # from this length on, two edits are allowed
MAX_CHARS = 20_000
MAX_CACHE = 10_000
# New words looked up per text, at most: 500 cost about 90 ms at worst (random 14-letter words),
# an ordinary mail needs a few dozen. Words past the budget are read as typed.
MAX_LOOKUPS = 500
# Short words that a missing space glues to the next word ("ispurchase", "myorder").
GLUED_PREFIXES = ("is", "my", "the", "an", "of", "to", "for", "your", "our", "this", "where")
_GLUED = frozenset(GLUED_PREFIXES)
_GLUED_LENGTHS = sorted({len(prefix) for prefix in GLUED_PREFIXES})
# A word, maybe with a number glued to its end ("order113542617735902"). Only words of MIN_LETTERS or
# more letters in lower case (İ is the one letter that grows: "i̇"): a shorter one is never a typo of a
# rule word nor one glued to a short word, and was only ever put back as typed (that was two thirds
# of what spelling cost a message: 117,600 calls to _replace on the dev set and corpus, now 50,000).
_TOKEN = re.compile(rf"([^\W\d_]{{{MIN_LETTERS},}}|[^\W\d_]*\u0130[^\W\d_]*)(\d{{3,}})?")


def allowed_edits(word: str) -> int:
    return 2 if len(word) >= LONG_WORD else 1


class Spelling:
    """Reads misspelt rule words as the rule words; leaves every other word alone."""

    def __init__(self, words: Iterable[str], not_typos: Iterable[str] = ()) -> None:
        self.words = frozenset(word.lower() for word in words if len(word) >= MIN_LETTERS)
        self.real_words = REAL_WORDS | {word.lower() for word in not_typos}
        self._by_deletion: dict[str, set[str]] = {}
        for word in self.words:
            for variant in _deletions(word, allowed_edits(word)):
                self._by_deletion.setdefault(variant, set()).add(word)
        lengths = [len(word) for word in self.words] or [0]
        self._shortest, self._longest = MIN_LETTERS, max(lengths) + 2
        self._cache: dict[str, str] = {}

    def correct(self, text: str) -> str:
        """``text`` with misspelt rule words replaced and numbers glued to rule words split off."""
        if not self.words:
            return text
        head, tail = text[:MAX_CHARS], text[MAX_CHARS:]
        budget = [MAX_LOOKUPS]
        return _TOKEN.sub(lambda match: self._replace(match, budget), head) + tail

    def _replace(self, match: re.Match[str], budget: list[int]) -> str:
        letters, digits = match.group(1), match.group(2)
        word = self._unglued(letters) or self.word(letters, budget)
        if digits is None:
            return word
        return f"{word} {digits}" if word.lower() in self.words else match.group()

    def _unglued(self, token: str) -> str | None:
        """'ispurchase' -> 'is purchase': a short word glued to the front of a rule word."""
        lower = token.lower()
        for length in _GLUED_LENGTHS:  # no glued prefix starts another one: at most one fits
            if lower[:length] in _GLUED and lower[length:] in self.words:
                return f"{token[:length]} {lower[length:]}"
        return None

    def word(self, token: str, budget: list[int] | None = None) -> str:
        """The rule word ``token`` is a typo of, or ``token`` itself (also once ``budget`` is spent)."""
        lower = token.lower()
        if not self._shortest <= len(lower) <= self._longest or lower in self.words or lower in self.real_words:
            return token
        found = self._cache.get(lower)
        if found is None:
            if budget is not None:
                if budget[0] <= 0:
                    return token
                budget[0] -= 1
            found = self._closest(lower) or token
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
            self._cache[lower] = found
        return found if found.lower() != lower else token

    def _closest(self, lower: str) -> str | None:
        candidates: set[str] = set()
        by_deletion = self._by_deletion
        for variant in _deletions(lower, allowed_edits(lower)):
            found = by_deletion.get(variant)
            if found:
                candidates |= found
        best: tuple[int, str] | None = None
        for word in sorted(candidates):
            if not (lower[0] == word[0] or lower[:2] == word[1::-1]):
                continue
            distance = edit_distance(lower, word)
            if distance <= allowed_edits(word) and (best is None or distance < best[0]):
                best = (distance, word)
        return best[1] if best else None


def _deletions(word: str, edits: int) -> Iterator[str]:
    """``word`` and every string made from it by deleting up to ``edits`` (1 or 2) letters."""
    yield word
    for first in range(len(word)):
        yield word[:first] + word[first + 1 :]
    if edits >= 2:
        for first, second in combinations(range(len(word)), 2):
            yield word[:first] + word[first + 1 : second] + word[second + 1 :]


def edit_distance(first: str, second: str) -> int:
    """Edits (insert, delete, change, swap two neighbours) from one word to the other."""
    previous_row: list[int] = []
    row = list(range(len(second) + 1))
    for i in range(1, len(first) + 1):
        before_previous, previous_row = previous_row, row
        row = [i] + [0] * len(second)
        for j in range(1, len(second) + 1):
            cost = first[i - 1] != second[j - 1]
            row[j] = min(previous_row[j] + 1, row[j - 1] + 1, previous_row[j - 1] + cost)
            if (i > 1 and j > 1 and first[i - 1] == second[j - 2] and first[i - 2] == second[j - 1]):
                row[j] = min(row[j], before_previous[j - 2] + 1)
    return row[-1]
