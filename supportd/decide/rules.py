"""The owner's rules (YAML in ``rules/``): what does the customer want, and what do we do about it.

One file per intent, loaded in name order. A file names the intent, its priority, the reply and the
actions; its ``rules`` list the signs of that intent. A rule matches when all of its conditions do:

    intent: defect
    priority: 90            # the highest-priority intent found is the primary one
    reply: defect           # replies/defect.txt (+ replies/defect.html)
    actions: [open_ticket]
    rules:
      - name: broken-item
        text: [broken, damaged, cracked]           # any of these words in the customer's own text
      - name: wrong-size
        message: {regex: 'wrong (size|colou?r)'}   # subject or text, a regular expression

Conditions: ``subject``, ``text`` (the customer's own words), ``message`` (either), ``from``, ``to``
(address patterns like ``*@bigclient.com``), ``headers`` ({Header-Name: words}), and ``all``/``any``
(lists of conditions) and ``not`` (one condition). The whole rule set is checked before any mail is
touched; every problem is reported as ``rules/FILE.yaml:LINE: what is wrong``.

Irreversible intents (``irreversible: true``: cancellation, unsubscription) are never acted on from
a mention alone: ``supportd.decide.explicit`` decides whether the customer clearly asked, and a clear
request is held until the customer confirms (``supportd.act.pending``).
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from supportd.base.errors import InvalidFiles, Problem
from supportd.base.yamlfile import Section, YList, YMap, load_yaml, modification_times, shown_path, walk_files
from supportd.decide import explicit, registry
from supportd.decide.explicit import Language
from supportd.decide.faq import DEFAULT_LANGUAGE, FaqEntry, FaqMatch, FaqSet
from supportd.decide.prefilter import PatternKey, Prefilter, pattern_key
from supportd.decide.spelling import Spelling
from supportd.intake.language import detect_language
from supportd.intake.message import Inbound

LANGUAGE_FILE_KEY = "language"
FAQ_FILE_KEY = "faq"
LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CONDITION_KEYS = ("subject", "text", "message", "from", "to", "headers", "all", "any", "not")
FAQ_ENTRY_KEYS = ("name", "language", "answer", *CONDITION_KEYS)
RULE_KEYS = ("name", "priority", "reply", "actions", "snippets", "confirm_action", *CONDITION_KEYS)
SPELLING_LISTS = ("typo_words", "not_typos")
LANGUAGE_LISTS = ("requests", "polite_questions", "negations", "musings", "conditions", "process_questions",
                  "affirmations", "refusals", "anger", "repeat_contact", "not_helped", "helped")
HOLDING_BACK_LISTS = ("negations", "musings", "conditions", "process_questions")
# Possessive spaces (\s*+): with plain \s* three times in a row, "order" and 1,600 spaces took 62 s (cubic).
DEFAULT_ORDER_NUMBER = r"(?:order|purchase|bestellung)\s*+(?:number|no\.?|nr\.?|#)?\s*+[:#]?\s*+([A-Z0-9][A-Z0-9-]{3,})"


# ---------------------------------------------------------------- what the rules look at


@dataclass(frozen=True)
class Hit:
    """Where a rule's words were found: 'subject' or 'text', and the span in that field."""

    field: str
    start: int
    end: int
    words: str


# What one message may cost the rules (bench/hostile.py): the text they read, the hits of one
# pattern that are read as mentions, and how far a sentence reaches around a hit.
RULE_TEXT_CHARS = 10_000
RULE_SUBJECT_CHARS = 500
MAX_HITS_PER_PATTERN = 25
SENTENCE_REACH = 600


NOTHING_RULED_OUT: dict[str, frozenset[PatternKey]] = {"subject": frozenset(), "text": frozenset()}


class View:
    """The parts of a message that conditions read, computed once per message.

    The text is the start of the customer's own words (``RULE_TEXT_CHARS``, some five pages): every
    pattern, the owner's included, then runs over a bounded text with no long whitespace runs
    (``supportd.intake.message.tame``).

    Subject and text are read with typos mended (``supportd.decide.spelling``): "cancfel my order" is
    "cancel my order" to every rule, and the sentences shown in ``why`` are the mended ones.
    """

    def __init__(self, msg: Inbound, spelling: Spelling | None = None, prefilter: Prefilter | None = None) -> None:
        self.msg = msg
        subject, text = msg.topic[:RULE_SUBJECT_CHARS], msg.own_text[:RULE_TEXT_CHARS]
        self.subject = spelling.correct(subject) if spelling else subject
        self.text = spelling.correct(text) if spelling else text
        self.sender = msg.sender.key if msg.sender else ""
        self.recipients = tuple(a.key for a in msg.to + msg.cc) + msg.delivered_to
        # By field, the patterns that cannot match it (``pattern_key``), read once for all of them.
        self.ruled_out = ({"subject": prefilter.ruled_out(self.subject), "text": prefilter.ruled_out(self.text)}
                          if prefilter else NOTHING_RULED_OUT)

    def field(self, name: str) -> str:
        """The subject or the text."""
        return self.subject if name == "subject" else self.text


class Condition(Protocol):
    def hits(self, view: View) -> list[Hit] | None:
        """The hits when the condition holds (possibly none, e.g. for ``from``); None when it does not."""
        ...


@dataclass(frozen=True)
class TextCondition:
    fields: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    keys: frozenset[PatternKey] = field(init=False, repr=False, compare=False)  # for the prefilter

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", frozenset(pattern_key(pattern) for pattern in self.patterns))

    def hits(self, view: View) -> list[Hit] | None:
        found: list[Hit] = []
        for name in self.fields:
            ruled_out = view.ruled_out[name]
            if ruled_out >= self.keys:
                continue  # none of the words its patterns need is there (the usual case)
            value = view.field(name)
            for pattern in self.patterns:
                if pattern_key(pattern) in ruled_out or pattern.search(value) is None:
                    continue
                matches = itertools.islice(pattern.finditer(value), MAX_HITS_PER_PATTERN)
                found.extend(Hit(name, m.start(), m.end(), m.group()) for m in matches)
        return found or None


@dataclass(frozen=True)
class AddressCondition:
    field: str
    patterns: tuple[str, ...]

    def hits(self, view: View) -> list[Hit] | None:
        addresses = (view.sender,) if self.field == "from" else view.recipients
        for address in addresses:
            if any(fnmatch.fnmatchcase(address, p) for p in self.patterns):
                return []
        return None


@dataclass(frozen=True)
class HeaderCondition:
    name: str
    patterns: tuple[re.Pattern[str], ...]

    def hits(self, view: View) -> list[Hit] | None:
        for value in view.msg.headers.get(self.name, ()):
            if not self.patterns or any(p.search(value) for p in self.patterns):
                return []
        return None


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]

    def hits(self, view: View) -> list[Hit] | None:
        found: list[Hit] = []
        for part in self.parts:
            hits = part.hits(view)
            if hits is None:
                return None
            found.extend(hits)
        return found


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]

    def hits(self, view: View) -> list[Hit] | None:
        matched = [h for h in (part.hits(view) for part in self.parts) if h is not None]
        return [hit for hits in matched for hit in hits] if matched else None


@dataclass(frozen=True)
class Not:
    part: Condition

    def hits(self, view: View) -> list[Hit] | None:
        return [] if self.part.hits(view) is None else None


def text_patterns(condition: Condition) -> Iterator[re.Pattern[str]]:
    """The patterns the condition runs over the subject and the text, however deeply nested."""
    if isinstance(condition, TextCondition):
        yield from condition.patterns
    elif isinstance(condition, (AllOf, AnyOf)):
        for part in condition.parts:
            yield from text_patterns(part)
    elif isinstance(condition, Not):
        yield from text_patterns(condition.part)


# ---------------------------------------------------------------- the rule set


@dataclass(frozen=True)
class Rule:
    name: str
    intent: str
    priority: int
    condition: Condition
    reply: str | None
    actions: tuple[str, ...]
    snippets: tuple[str, ...]
    confirm_action: str | None
    where: str


@dataclass(frozen=True)
class Intent:
    name: str
    priority: int
    reply: str | None
    actions: tuple[str, ...]
    irreversible: bool
    confirm_action: str | None
    fallback: bool
    where: str


@dataclass(frozen=True)
class Mention:
    """An irreversible intent found in the customer's words, and what the sentence does with it."""

    intent: str
    rule: str
    kind: str
    words: str
    sentence: str
    confirm_action: str | None


@dataclass(frozen=True)
class Decision:
    primary_intent: str
    intents: tuple[str, ...]
    rule: str
    why: str
    reply: str | None
    actions: tuple[str, ...]
    snippets: tuple[str, ...]
    explicit_request: str | None
    held_action: str | None
    order_number: str | None
    mentions: tuple[Mention, ...] = ()
    matched_rules: tuple[str, ...] = ()
    angry: bool = False
    repeat_contact: bool = False
    faq: FaqMatch | None = None
    language: str = DEFAULT_LANGUAGE

    @property
    def faq_entry(self) -> FaqEntry | None:
        """The FAQ entry whose answer this message can get (matched, and its answer written)."""
        return self.faq.entry if self.faq else None

    @property
    def tentative_mentions(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if m.kind != explicit.EXPLICIT)


@dataclass
class RuleSet:
    intents: dict[str, Intent]
    rules: list[Rule]
    language: Language
    files: dict[str, float] = field(default_factory=dict)
    faq: FaqSet = field(default_factory=FaqSet)
    spelling: Spelling | None = None
    prefilter: Prefilter | None = field(init=False, repr=False)  # None: every pattern scans every field

    def __post_init__(self) -> None:
        conditions = [rule.condition for rule in self.rules] + [entry.condition for entry in self.faq.entries]
        self.prefilter = Prefilter(pattern for condition in conditions for pattern in text_patterns(condition))

    @property
    def fallback(self) -> Intent:
        return next(i for i in self.intents.values() if i.fallback)

    @property
    def rule_names(self) -> list[str]:
        return [r.name for r in self.rules]

    def decide(self, msg: Inbound) -> Decision:
        """Every intent the message shows, the primary one first, and what to do about it."""
        view = View(msg, self.spelling, self.prefilter)
        matches: list[tuple[Rule, list[Hit]]] = []
        for rule in self.rules:
            hits = rule.condition.hits(view)
            if hits is not None:
                matches.append((rule, hits))
        mentions = self._mentions(view, matches)
        order_number = self._order_number(view)
        angry = bool(self.language.anger.search(view.text) or self.language.anger.search(view.subject))
        repeat = bool(self.language.repeat_contact.search(view.text))
        language = detect_language(view.text or view.subject, DEFAULT_LANGUAGE)
        faq = self.faq.match(view, language, _why)
        if not matches:
            fallback = self.fallback
            return Decision(
                primary_intent=fallback.name, intents=(fallback.name,), rule=fallback.name,
                why="no rule matched", reply=fallback.reply, actions=fallback.actions, snippets=(),
                explicit_request=None, held_action=None, order_number=order_number,
                angry=angry, repeat_contact=repeat, faq=faq, language=language,
            )
        request = next((m for m in mentions if m.kind == explicit.EXPLICIT), None)
        ranked = self._ranked(matches, mentions, request)
        if not ranked:  # only a refused change ("I don't want to cancel"): the rest is for a person
            fallback = self.fallback
            return Decision(
                primary_intent=fallback.name, intents=(fallback.name,), rule=fallback.name,
                why="only a refused change; " + _why(view, matches[0][1]), reply=fallback.reply,
                actions=fallback.actions, snippets=(), explicit_request=None, held_action=None,
                order_number=order_number, mentions=tuple(mentions),
                matched_rules=tuple(rule.name for rule, _ in matches), angry=angry, repeat_contact=repeat,
                faq=faq, language=language,
            )
        primary_rule, primary_hits = ranked[0]
        intents = list(dict.fromkeys(rule.intent for rule, _ in ranked))
        actions = list(primary_rule.actions)
        for rule, _ in ranked[1:]:
            actions.extend(a for a in rule.actions if registry.from_every_rule(a) and a not in actions)
        snippets = tuple(dict.fromkeys(s for rule, _ in ranked for s in rule.snippets))
        return Decision(
            primary_intent=primary_rule.intent,
            intents=tuple(intents),
            rule=primary_rule.name,
            why=_why(view, primary_hits),
            reply=primary_rule.reply,
            actions=tuple(actions),
            snippets=snippets,
            explicit_request=request.intent if request else None,
            held_action=request.confirm_action if request else None,
            order_number=order_number,
            mentions=tuple(mentions),
            matched_rules=tuple(rule.name for rule, _ in matches),
            angry=angry,
            repeat_contact=repeat,
            faq=faq,
            language=language,
        )

    def _ranked(self, matches: list[tuple[Rule, list[Hit]]], mentions: list[Mention],
                request: Mention | None) -> list[tuple[Rule, list[Hit]]]:
        """The matches, the primary first: by priority, but a clear request for an irreversible
        change comes first ("Please cancel my order. I ordered the wrong colour." is a
        cancellation) and a refused one never leads ("I don't want to cancel, I moved").

        One exception keeps another matter from being swallowed: a request to stop emails
        (``confirm_action: unsubscribe``) does not outrank a matter of its own (the broken mug
        is answered; the unsubscription is confirmed alongside).
        """
        refused = {m.intent for m in mentions if m.kind == explicit.NEGATED}
        ranked = sorted(((rule, hits) for rule, hits in matches if rule.intent not in refused),
                        key=lambda m: -m[0].priority)  # stable: file order breaks ties
        if request is None:
            return ranked
        others = [rule for rule, _ in ranked if not self.intents[rule.intent].irreversible]
        if request.confirm_action == "unsubscribe" and others:
            return ranked
        first = [match for match in ranked if match[0].name == request.rule]
        return first + [match for match in ranked if match[0].name != request.rule]

    def _mentions(self, view: View, matches: list[tuple[Rule, list[Hit]]]) -> list[Mention]:
        """For each irreversible intent found, the reading of its mentions that decides."""
        readings: dict[str, list[tuple[str, Mention]]] = {}
        for rule, hits in matches:
            if self.intents[rule.intent].irreversible:
                for hit in hits:
                    readings.setdefault(rule.intent, []).append((hit.field, self._read_mention(view, rule, hit)))
        deciding = [self._deciding(view, found) for found in readings.values()]
        return sorted(deciding, key=lambda m: -self.intents[m.intent].priority)

    def _deciding(self, view: View, readings: list[tuple[str, Mention]]) -> Mention:
        """The reading of one intent's mentions that decides what we do.

        A clear request in the customer's text wins, unless the text also takes the same change back
        ("Please cancel my order. Actually, don't cancel my order."). Otherwise a reading that holds
        back (negated, musing, condition, question) is the one to record. A request that is only in
        the subject is a headline: it stands when the text has nothing that holds it back (the
        subject "Unsubscribe" and no text), and takes the kind of what the text says otherwise.
        """
        in_text = [mention for where, mention in readings if where == "text"]
        in_subject = [mention for where, mention in readings if where == "subject"]
        refused = [m for m in in_text if m.kind == explicit.NEGATED]
        for mention in in_text:
            if mention.kind == explicit.EXPLICIT:
                return next((m for m in refused if m.confirm_action == mention.confirm_action), mention)
        held_back = next((m for m in in_text if m.kind != explicit.STATEMENT), None)
        if held_back is not None:
            return held_back
        for mention in in_subject:
            if mention.kind == explicit.EXPLICIT:
                doubt = explicit.reservation(view.text, self.language)
                return replace(mention, kind=doubt) if doubt else mention
        return (in_text or in_subject)[0]

    def _read_mention(self, view: View, rule: Rule, hit: Hit) -> Mention:
        source = view.subject if hit.field == "subject" else view.text
        sentence, start, end = sentence_around(source, hit.start, hit.end)
        if hit.field == "subject" and not view.msg.own_subject:
            kind = explicit.STATEMENT  # the subject of a reply is ours, not the customer's words
        else:
            kind = explicit.classify(sentence, start, end, self.language)
            if kind == explicit.STATEMENT and explicit.is_short_command(source, hit.start, hit.end, self.language):
                kind = explicit.EXPLICIT
        return Mention(rule.intent, rule.name, kind, hit.words, " ".join(sentence.split()), rule.confirm_action)

    def _order_number(self, view: View) -> str | None:
        for value in (view.subject, view.text):
            found = self.language.order_number.search(value)
            if found:
                return found.group(1) if found.groups() else found.group()
        return None


# Where a line break also ends a sentence: at a blank line, and before a list item or a quote line.
# A single line break inside a paragraph does not: mail clients wrap long lines, and "I am thinking
# of\ncancelling my subscription" is one sentence, whose musing must not be cut off.
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*(?=\n|[-*•>][ \t]|\d{1,2}[.)][ \t])")
NOT_A_FULL_STOP = ("e.g", "i.e", "mr", "mrs", "ms", "dr", "no", "nr", "vs", "etc", "approx", "ca", "z.b", "bzw")


def sentence_around(text: str, start: int, end: int) -> tuple[str, int, int]:
    """The sentence of ``text`` that holds ``text[start:end]``, and the span within that sentence.

    A sentence ends at '!', '?', a full stop followed by a space (not in 'e.g.', 'no. 881' or
    '12.50'), or a paragraph break; wrapped lines inside a paragraph stay one sentence. A sentence
    reaches at most ``SENTENCE_REACH`` characters either side of the span: nobody writes longer ones,
    and a text without any full stop must not make every hit cost the whole text.
    """
    lowest, highest = max(0, start - SENTENCE_REACH), min(len(text), end + SENTENCE_REACH)
    left = next((index + 1 for index in _may_end_sentence_backwards(text, lowest, start)
                 if _ends_sentence(text, index)), lowest)
    right = next((match.start() for match in _MAY_END_SENTENCE.finditer(text, end, highest)
                  if _ends_sentence(text, match.start())), highest)
    if right < len(text) and text[right] in ".!?":
        right += 1  # the sentence keeps its own punctuation: a final '?' makes it a question
    while left < start and text[left].isspace():
        left += 1
    while right > end and text[right - 1].isspace():
        right -= 1
    return text[left:right], start - left, end - left


# Only these characters can end a sentence (``_ends_sentence``): the search for the ends skips the rest
# instead of asking of every character (177,000 calls for 3,000 backlog mails, 30 a sentence).
_MAY_END_SENTENCE = re.compile(r"[!?.\n]")


def _may_end_sentence_backwards(text: str, lowest: int, start: int) -> Iterator[int]:
    """The indexes in ``text[lowest:start]`` of characters that may end a sentence, last first."""
    index = start
    while True:
        index = max(text.rfind(char, lowest, index) for char in "!?.\n")
        if index < 0:
            return
        yield index


def _ends_sentence(text: str, index: int) -> bool:
    char = text[index]
    if char in "!?":
        return True
    if char == "\n":
        # The line before, as far back as it can matter (a longer line is not blank: no whitespace
        # run in the text is longer than 40 characters).
        lowest = max(0, index - 100)
        line_before = text[max(text.rfind("\n", lowest, index) + 1, lowest) : index]
        return not line_before.strip() or PARAGRAPH_BREAK.match(text, index) is not None
    if char != ".":
        return False
    after = text[index + 1 : index + 2]
    if after and not after.isspace():
        return False
    word_before = text[max(0, index - 8) : index].split()[-1:] or [""]
    return word_before[0].lower() not in NOT_A_FULL_STOP


def _why(view: View, hits: list[Hit]) -> str:
    if not hits:
        return "matched on the sender, recipients or headers"
    shown = []
    for hit in hits[:3]:
        source = view.subject if hit.field == "subject" else view.text
        sentence, _, _ = sentence_around(source, hit.start, hit.end)
        shown.append(f"{hit.field} has '{hit.words}' in: \"{' '.join(sentence.split())[:120]}\"")
    return "; ".join(shown)


# ---------------------------------------------------------------- loading and checking


class _RuleReader:
    def __init__(self, base: Path, replies: set[str] | None, confirm_actions: set[str]) -> None:
        self.base = base
        self.replies = replies
        self.confirm_actions = confirm_actions
        self.problems: list[Problem] = []
        self.intents: dict[str, Intent] = {}
        self.rules: list[Rule] = []
        self.rule_lines: dict[str, str] = {}
        self.language_lists: dict[str, list[str]] = {}
        self.spelling_lists: dict[str, list[str]] = {}
        self.language_file: str | None = None
        self.order_number = DEFAULT_ORDER_NUMBER
        self.faq_entries: list[FaqEntry] = []

    def read_file(self, path: Path) -> None:
        shown = shown_path(path, self.base.parent)
        data = load_yaml(path, shown, self.problems)
        if data is None:
            return
        top = Section(data, shown, self.problems, "")
        if top.has(LANGUAGE_FILE_KEY):
            self.read_language(top.take_section(LANGUAGE_FILE_KEY), shown)
            top.finish()
            return
        if top.has(FAQ_FILE_KEY):
            self.read_faq(top, shown)
            return
        self.read_intent(top, shown)

    def read_language(self, section: Section, shown: str) -> None:
        self.language_file = shown
        for key in LANGUAGE_LISTS:
            if section.has(key):
                words = section.take_strings(key)
                if not words and section.data[key] is not None:
                    section.error(section.line_of(key), f"language.{key} lists no words; add some")
                self.language_lists[key] = words
        for key in SPELLING_LISTS:
            if section.has(key):
                self.spelling_lists[key] = section.take_strings(key)
        if section.has("order_number"):
            pattern = section.take("order_number", str, DEFAULT_ORDER_NUMBER)
            if self.compile_regex(pattern, section, "order_number") is not None:
                self.order_number = pattern
        section.finish()

    def read_faq(self, top: Section, shown: str) -> None:
        """A file of FAQ entries on one topic (see ``supportd.decide.faq``)."""
        topic = top.take(FAQ_FILE_KEY, str, "", required=True)
        if topic and not INTENT_NAME.match(topic):
            top.error(top.line_of(FAQ_FILE_KEY), f"faq topic '{topic}' must be lower case letters, digits and _")
        entries = top.data.get("entries")
        top.known.append("entries")
        if isinstance(entries, YList) and entries:
            for index, item in enumerate(entries):
                self.read_faq_entry(item, topic, shown, entries.line_of(index))
        else:
            top.error(top.line_of("entries") if top.has("entries") else top.line,
                      f"faq '{topic}' needs 'entries': a list, each starting with '- name:'")
        top.finish()

    def read_faq_entry(self, item: Any, topic: str, shown: str, line: int) -> None:
        entry = Section(item, shown, self.problems, "entry", line)
        entry.known.extend(FAQ_ENTRY_KEYS)
        name = entry.take("name", str, "", required=True)
        where = f"{shown}:{entry.line}"
        if name in self.rule_lines:
            entry.error(entry.line_of("name"), f"name '{name}' is also used at {self.rule_lines[name]}")
        self.rule_lines[name] = where
        language = entry.take("language", str, "", required=True)
        if language and not LANGUAGE_CODE.match(language):
            entry.error(entry.line_of("language"), f"language '{language}' must be a two-letter code like en or de")
        problems_before = len(self.problems)
        condition = self.condition_of(entry)
        if condition is None and len(self.problems) == problems_before and not _unknown_keys(entry):
            entry.error(entry.line, f"faq entry '{name}' has no condition; add one of: {', '.join(CONDITION_KEYS)}")
        answer = entry.take("answer", str, None)
        if answer is not None and not answer.strip():
            answer = None
        if answer is not None:
            self.check_answer(answer, entry)
        self.faq_entries.append(FaqEntry(name=name, topic=topic, language=language,
                                         condition=condition or AnyOf(()), answer=answer, where=where))
        entry.finish()

    def check_answer(self, answer: str, entry: Section) -> None:
        """An answer is a template: its syntax and its variables are checked at the line they are on."""
        import jinja2
        import jinja2.meta
        from jinja2.sandbox import SandboxedEnvironment

        from supportd.deliver.replies import VARIABLES

        first = entry.line_of("answer") + (1 if "\n" in answer else 0)  # a block (answer: |) starts below
        try:
            parsed = SandboxedEnvironment().parse(answer)
        except jinja2.TemplateSyntaxError as exc:
            entry.error(first + (exc.lineno or 1) - 1, f"answer: template syntax: {exc.message}")
            return
        for variable in sorted(jinja2.meta.find_undeclared_variables(parsed) - set(VARIABLES)):
            entry.error(first, f"answer: unknown variable '{variable}'; known: {', '.join(VARIABLES)}")

    def read_intent(self, top: Section, shown: str) -> None:
        name = top.take("intent", str, "", required=True)
        if name and not INTENT_NAME.match(name):
            top.error(top.line_of("intent"), f"intent '{name}' must be lower case letters, digits and _")
        if name in self.intents:
            top.error(top.line_of("intent"), f"intent '{name}' is also defined in {self.intents[name].where}")
        priority = top.take("priority", int, 50)
        reply = self.reply_name(top, top.take("reply", str))
        actions = self.action_list(top, "actions")
        irreversible = top.take("irreversible", bool, False)
        confirm_action = self.confirm_action(top, top.take("confirm_action", str))
        if irreversible and not confirm_action:
            top.error(top.line, f"intent '{name}' is irreversible: name its 'confirm_action' "
                                f"(one of {', '.join(sorted(self.confirm_actions))})")
        fallback = top.take("fallback", bool, False)
        intent = Intent(name, priority, reply, actions, irreversible, confirm_action, fallback,
                        f"{shown}:{top.line_of('intent')}")
        self.intents[name] = intent
        rules = top.data.get("rules")
        top.known.append("rules")
        if isinstance(rules, YList):
            for index, item in enumerate(rules):
                self.read_rule(item, intent, shown, rules.line_of(index))
        elif rules is not None:
            top.error(top.line_of("rules"), "'rules' must be a list of rules, each starting with '- name:'")
        elif not fallback:
            top.error(top.line, f"intent '{name}' has no 'rules'; add some, or mark it 'fallback: true'")
        top.finish()

    def read_rule(self, item: Any, intent: Intent, shown: str, line: int) -> None:
        rule = Section(item, shown, self.problems, "rule", line)
        rule.known.extend(RULE_KEYS)  # so that a misspelt key gets a "did you mean"
        name = rule.take("name", str, "", required=True)
        where = f"{shown}:{rule.line}"
        if name in self.rule_lines:
            rule.error(rule.line_of("name"), f"rule name '{name}' is also used at {self.rule_lines[name]}")
        self.rule_lines[name] = where
        problems_before = len(self.problems)
        condition = self.condition_of(rule)
        if condition is None and len(self.problems) == problems_before and not _unknown_keys(rule):
            rule.error(rule.line, f"rule '{name}' has no condition; add one of: {', '.join(CONDITION_KEYS)}")
        actions = self.action_list(rule, "actions") if rule.has("actions") else intent.actions
        snippets = tuple(rule.take_strings("snippets"))
        for snippet in snippets:
            self.reply_name(rule, f"snippets/{snippet}", key="snippets")
        confirm = self.confirm_action(rule, rule.take("confirm_action", str)) or intent.confirm_action
        reply = self.reply_name(rule, rule.take("reply", str)) or intent.reply
        self.rules.append(Rule(
            name=name, intent=intent.name, priority=rule.take("priority", int, intent.priority),
            condition=condition or AnyOf(()), reply=reply, actions=actions, snippets=snippets,
            confirm_action=confirm, where=where,
        ))
        rule.finish()

    def condition_of(self, section: Section) -> Condition | None:
        parts: list[Condition] = []
        for key in CONDITION_KEYS:
            if not section.has(key):
                continue
            section.known.append(key)
            value, line = section.data[key], section.line_of(key)
            part = self.condition_part(key, value, section, line)
            if part is not None:
                parts.append(part)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def condition_part(self, key: str, value: Any, section: Section, line: int) -> Condition | None:
        if key in ("subject", "text", "message"):
            fields = {"subject": ("subject",), "text": ("text",), "message": ("subject", "text")}[key]
            patterns = self.patterns(value, section, key, line)
            return TextCondition(fields, patterns) if patterns else None
        if key in ("from", "to"):
            addresses = self.strings(value, section, key, line)
            return AddressCondition(key, tuple(a.lower() for a in addresses)) if addresses else None
        if key == "headers":
            return self.header_conditions(value, section, line)
        if key == "not":
            inner = self.nested(value, section, line, "not")
            return Not(inner) if inner is not None else None
        items = value if isinstance(value, YList) else None
        if items is None:
            section.error(line, f"'{key}' must be a list of conditions, each starting with '- '")
            return None
        if not items:
            section.error(line, f"'{key}' lists no conditions; add some, each starting with '- '")
            return None
        nested = [self.nested(item, section, items.line_of(i), key) for i, item in enumerate(items)]
        found = tuple(n for n in nested if n is not None)
        return (AllOf(found) if key == "all" else AnyOf(found)) if found else None

    def nested(self, value: Any, section: Section, line: int, key: str) -> Condition | None:
        inner = Section(value, section.file, self.problems, key, line)
        inner.known.extend(CONDITION_KEYS)
        problems_before = len(self.problems)
        condition = self.condition_of(inner)
        if condition is None and len(self.problems) == problems_before and not _unknown_keys(inner):
            section.error(line, f"'{key}' needs a condition inside: one of {', '.join(CONDITION_KEYS)}")
        inner.finish()
        return condition

    def header_conditions(self, value: Any, section: Section, line: int) -> Condition | None:
        if not isinstance(value, YMap):
            section.error(line, "'headers' must be a mapping like  headers: {X-Priority: [urgent]}")
            return None
        parts: list[Condition] = []
        for name, words in value.items():
            patterns = self.patterns(words, section, f"headers.{name}", value.line_of(name)) if words else ()
            parts.append(HeaderCondition(name.lower(), patterns))
        return AllOf(tuple(parts)) if parts else None

    def patterns(self, value: Any, section: Section, key: str, line: int) -> tuple[re.Pattern[str], ...]:
        """Words (a list or one text) or a mapping with 'words' and/or 'regex'."""
        from supportd.decide.wordlists import compile_words

        problems_before = len(self.problems)
        if isinstance(value, YMap):
            inner = Section(value, section.file, self.problems, key, line)
            words = inner.take_strings("words")
            regexes = inner.take_strings("regex")
            inner.finish()
            compiled = [self.compile_regex(pattern, inner, "regex", index) for index, pattern in enumerate(regexes)]
            found = [p for p in [compile_words(words), *compiled] if p is not None]
        else:
            found = [p for p in [compile_words(self.strings(value, section, key, line))] if p is not None]
        if not found and len(self.problems) == problems_before:
            section.error(line, f"'{key}' lists no words or regex to look for")
        return tuple(found)

    def strings(self, value: Any, section: Section, key: str, line: int) -> list[str]:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [str(value)]
        if isinstance(value, YList) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            return [str(v) for v in value]
        section.error(line, f"'{key}' must be a word, or a list of words like [broken, damaged]")
        return []

    def compile_regex(self, pattern: str, section: Section, key: str, index: int | None = None
                      ) -> re.Pattern[str] | None:
        """The compiled pattern; a bad one is reported on its own line (item ``index`` of a list)."""
        try:
            return re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            value = section.data.get(key)
            line = value.line_of(index) if isinstance(value, YList) and index is not None else section.line_of(key)
            section.error(line, f"bad regular expression {pattern!r}: {exc.msg} at position {exc.pos}")
            return None

    def reply_name(self, section: Section, name: str | None, key: str = "reply") -> str | None:
        if name and self.replies is not None and name not in self.replies:
            section.error(section.line_of(key), f"reply template '{name}' not found in the replies folder "
                                                f"(expected {name}.txt)")
        return name

    def action_list(self, section: Section, key: str) -> tuple[str, ...]:
        actions = section.take_strings(key)
        known = registry.rule_actions()
        for action in actions:
            if action not in known:
                section.error(section.line_of(key), f"unknown action '{action}'; known: {', '.join(known)} "
                                                    "(irreversible actions go in 'confirm_action')")
        return tuple(actions)

    def confirm_action(self, section: Section, name: str | None) -> str | None:
        if name and name not in self.confirm_actions:
            section.error(section.line_of("confirm_action"),
                          f"unknown confirm_action '{name}'; known: {', '.join(sorted(self.confirm_actions))} "
                          "(or add it under 'actions:' in the config)")
        return name

    def finish(self) -> RuleSet:
        self.check_language_for_irreversible_intents()
        fallbacks = [i for i in self.intents.values() if i.fallback]
        if len(fallbacks) != 1:
            where = ", ".join(i.where for i in fallbacks) or "none"
            file = fallbacks[1].where.rpartition(":")[0] if len(fallbacks) > 1 else str(self.base)
            line = int(fallbacks[1].where.rpartition(":")[2]) if len(fallbacks) > 1 else 1
            self.problems.append(Problem(file, line, f"exactly one intent must be 'fallback: true' "
                                                     f"(for mail no rule matches); found: {where}"))
        if self.problems:
            raise InvalidFiles(self.problems)
        language = Language.from_lists(self.language_lists, self.order_number)
        spelling = Spelling(self.spelling_lists.get("typo_words", []), self.spelling_lists.get("not_typos", []))
        return RuleSet(self.intents, self.rules, language, faq=FaqSet(self.faq_entries), spelling=spelling)

    def check_language_for_irreversible_intents(self) -> None:
        """An irreversible intent needs the lists that hold a mention back: without negations,
        "I don't want to cancel" would read as a request."""
        missing = [name for name in HOLDING_BACK_LISTS if name not in self.language_lists]  # empty: reported
        for intent in (i for i in self.intents.values() if i.irreversible and missing):
            file, _, line = intent.where.rpartition(":")
            where = (f"in {self.language_file}" if self.language_file
                     else "in a file with 'language:' (see rules/00-language.yaml)")
            self.problems.append(Problem(file, int(line), (
                f"intent '{intent.name}' is irreversible, but the word lists {', '.join(missing)} are missing "
                f"{where}; without them a negated or hesitant mention would read as a request")))


def load_rules(folder: Path, replies: Iterable[str] | None = None,
               extra_confirm_actions: Iterable[str] = ()) -> RuleSet:
    """Read and check every rule file; raises ``InvalidFiles`` with all problems found."""
    reader = _RuleReader(folder, set(replies) if replies is not None else None,
                         set(registry.confirm_actions()) | set(extra_confirm_actions))
    files = list(walk_files(folder, (".yaml", ".yml")))
    if not files:
        raise InvalidFiles([Problem(str(folder), 1, "no rule files (*.yaml) in this folder")])
    for path in files:
        reader.read_file(path)
    ruleset = reader.finish()
    ruleset.files = rule_file_stamps(folder)
    return ruleset


def _unknown_keys(section: Section) -> bool:
    """Whether the mapping has keys nobody asked for (``finish`` reports them with a "did you mean")."""
    return any(key not in section.known for key in section.data)


def rule_file_stamps(folder: Path) -> dict[str, float]:
    """Modification times of the rule files, to notice an edit without a SIGHUP."""
    return modification_times((path.name, path) for path in walk_files(folder, (".yaml", ".yml")))
