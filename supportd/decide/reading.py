"""What a message says, read without the ledger: the half of a decision that needs no state.

``plan_message`` asks two kinds of questions. Some look only at the message and the owner's files
(what do the rules see, may a robot be answered, which language, which words are the customer's
own); those are answered here, by ``read_message``, into a ``Reading``. The rest need the ledger
(a duplicate? a ticket's thread? a held action? today's caps?) and stay in ``plan_message``.

A ``Reader`` holds what reading needs and nothing else: no ledger, no connection, no clock. So a
backlog can be read ahead in another process (``supportd.service.readahead``) from a pickled
``Reader``, and the daemon reads a single message the same way in its own process: one piece of
code, whichever process runs it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from supportd.decide import guard
from supportd.decide.rules import Decision, RuleSet
from supportd.intake.language import detect_language
from supportd.intake.message import Inbound
from supportd.intake.owntext import OurText, has_our_lines, own_words


@dataclass(frozen=True)
class Reader:
    """The owner's files as reading needs them (picklable: a read-ahead process gets a copy)."""

    rules: RuleSet
    our_text: OurText  # the fixed text of the templates and FAQ answers: never the customer's words
    guard_settings: guard.GuardSettings
    language: str  # the shop's language, for replies in a language nobody detected


@dataclass(frozen=True)
class Reading:
    """One message as read: its own words without our text, what the rules see, what the guard says."""

    msg: Inbound  # own_text without supportd's own text (see ``without_our_text``)
    decision: Decision
    verdict: guard.Verdict
    language: str  # the language replies to it are written in


def read_message(reader: Reader, msg: Inbound) -> Reading:
    """Everything about ``msg`` that needs no state, in the order ``plan_message`` used to ask it."""
    msg = without_our_text(reader.our_text, msg)
    return Reading(
        msg=msg, decision=reader.rules.decide(msg), verdict=guard.check(msg, reader.guard_settings),
        language=detect_language(f"{msg.own_subject}\n{msg.own_text}", reader.language),
    )


def without_our_text(our_text: OurText, msg: Inbound) -> Inbound:
    """The message with any of supportd's own text (its templates') taken out of the own words.

    The second line of defence behind quote detection: our confirmation request pasted back
    without quote marks, or re-wrapped by the client, is never the customer's "yes".
    """
    if not has_our_lines(msg.full_text, our_text):
        return msg  # its own_text is own_words(full_text) (``parse``), and there is nothing of ours to drop
    own_text = own_words(msg.full_text, our_text)
    return msg if own_text == msg.own_text else dataclasses.replace(msg, own_text=own_text)
