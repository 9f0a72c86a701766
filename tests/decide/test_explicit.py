"""A clear request, or a side remark? Realistic customer sentences and whole messages, read by the default rules.

Every case goes through the real path: a customer email is built, parsed by ``supportd.intake.message.parse``
(so quoted text and signatures are cut away as in the daemon), and decided by the repository's rules.
A case that is not a clear request must never give ``explicit_request``: that is what would start a
cancellation or an unsubscription. Where a rule should still notice the mention, the case also names
the intent and how the sentence was read, so a passing case cannot be one the rules simply missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from supportd.decide import explicit
from supportd.decide.rules import Decision, RuleSet, load_rules, sentence_around
from supportd.deliver.replies import Replies
from supportd.intake.message import Inbound, parse

from conftest import REPO, mail

NEGATED, MUSING, CONDITIONAL, QUESTION, STATEMENT = (
    explicit.NEGATED, explicit.MUSING, explicit.CONDITIONAL, explicit.QUESTION, explicit.STATEMENT)
CANCEL, UNSUB = "cancellation", "unsubscribe"


@dataclass(frozen=True)
class Case:
    body: str
    intent: str | None = None  # the irreversible intent that must be noticed (None: no rule needs to see it)
    kind: str | None = None  # how the mention must be read
    subject: str = "Hello"

    def __str__(self) -> str:
        return " ".join(f"{self.subject} | {self.body}".split())[:70]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(REPO / "rules", Replies(REPO / "replies").names())


def decide(rules: RuleSet, case: Case) -> Decision:
    return rules.decide(email_of(case))


def email_of(case: Case) -> Inbound:
    return parse(mail(case.body, subject=case.subject))


# ---------------------------------------------------------------- not a request


NEGATIONS = [
    Case("I don't want to cancel my order, I just need the invoice.", CANCEL, NEGATED),
    Case("I do not want to unsubscribe, but please send fewer emails.", UNSUB, NEGATED),
    Case("Please don't cancel my order.", CANCEL, NEGATED),
    Case("Please do not unsubscribe me, I still like your newsletter.", UNSUB, NEGATED),
    Case("I never asked you to cancel my order.", CANCEL, NEGATED),
    Case("I'd rather not cancel my order.", CANCEL, NEGATED),
    Case("I have no intention of cancelling my order.", CANCEL, NEGATED),
    Case("I won't cancel my subscription yet.", CANCEL, NEGATED),
    Case("I hope I don't have to cancel my order.", CANCEL, NEGATED),
    Case("Unsubscribing is not what I want.", UNSUB, NEGATED),
    Case("Unsubscribe? No, not me.", UNSUB),
    Case("Please cancel my order 77120. Actually, don't cancel my order, my sister wants it.", CANCEL, NEGATED),
    Case("Ich möchte mein Abo nicht kündigen.", CANCEL, NEGATED),
    Case("Bitte stornieren Sie meine Bestellung nicht.", CANCEL, NEGATED),
    Case("Ich kündige mein Abo nicht, keine Sorge.", CANCEL, NEGATED),
    Case("I will not unsubscribe, I love your emails.", UNSUB, NEGATED),
    Case("Don't worry, I'm not cancelling my subscription.", CANCEL, NEGATED),
    Case("The mug is lovely, no need to cancel my order.", CANCEL, NEGATED),
    Case("I no longer want to cancel my order.", CANCEL, NEGATED),
    Case("Please stop sending me broken mugs.", None),
    Case("I don't want to receive a damaged parcel again.", None),
]

MUSINGS = [
    Case("I'm thinking of unsubscribing.", UNSUB, MUSING),
    Case("I'm thinking about cancelling my subscription.", CANCEL, MUSING),
    Case("I might cancel my order.", CANCEL, MUSING),
    Case("Maybe I should cancel my subscription.", CANCEL, MUSING),
    Case("I'm wondering whether I should cancel my order.", CANCEL, MUSING),
    Case("I wonder if I should unsubscribe.", UNSUB, MUSING),
    Case("I'm considering cancelling my membership.", CANCEL, MUSING),
    Case("I'm tempted to unsubscribe from your newsletter.", UNSUB, MUSING),
    Case("I'll probably unsubscribe at some point.", UNSUB, MUSING),
    Case("Not sure whether to cancel my subscription.", CANCEL),
    Case("Could you tell me whether I can cancel my subscription?", CANCEL, MUSING),
    Case("Just wondering, can I cancel an order once it has shipped?", CANCEL, MUSING),
    Case("Honestly, I'm thinking of unsubscribing from your newsletter too, you send a lot.", UNSUB, MUSING),
    Case("Hello,\n\nI have been a customer for years and I am thinking of\ncancelling my subscription "
         "because of the price.\n\nBest,\nAda", CANCEL, MUSING),
    Case("Vielleicht kündige ich mein Abo.", CANCEL, MUSING),
    Case("I thought about cancelling my order but I will keep it.", CANCEL, MUSING),
    Case("I'd like to cancel my order, but my husband says let's wait.", CANCEL, MUSING),
    Case("Please let me know whether I can still cancel my order.", CANCEL, MUSING),
]

CONDITIONS = [
    Case("If this isn't fixed I might cancel.", None),
    Case("If this isn't fixed I'll cancel my subscription.", CANCEL, CONDITIONAL),
    Case("If it doesn't arrive by Friday I will cancel the order.", CANCEL, CONDITIONAL),
    Case("What happens if I cancel my order?", CANCEL, CONDITIONAL),
    Case("What happens if I cancel?", None),
    Case("Would you charge me if I cancel my order?", CANCEL, CONDITIONAL),
    Case("Could you explain what happens if I cancel my subscription?", CANCEL),
    Case("Before I cancel my subscription, can you check my account?", CANCEL, CONDITIONAL),
    Case("Could I cancel my order if needed?", CANCEL, CONDITIONAL),
    Case("If the mug is not replaced, cancel my order and refund me.", CANCEL, CONDITIONAL),
    Case("Wenn das nicht repariert wird, kündige ich mein Abo.", CANCEL, CONDITIONAL),
    Case("Just so you know, if the parcel is late again I'll cancel my subscription.", CANCEL, CONDITIONAL),
    Case("Please tell me if I can cancel my order.", CANCEL, CONDITIONAL),
    Case("Can you check if my order was cancelled?", CANCEL, CONDITIONAL),
]

PROCESS_QUESTIONS = [
    Case("Is there a fee if I cancel?", None),
    Case("Is there a fee to cancel my order?", CANCEL, QUESTION),
    Case("How do I unsubscribe?", UNSUB, QUESTION),
    Case("How do I cancel my subscription?", CANCEL, QUESTION),
    Case("How can I cancel my order?", CANCEL, QUESTION),
    Case("Can I cancel my order?", CANCEL, QUESTION),
    Case("Can I still cancel my order after it shipped?", CANCEL, QUESTION),
    Case("Is it possible to cancel an order?", CANCEL, QUESTION),
    Case("Do I need to cancel my subscription before it renews?", CANCEL, QUESTION),
    Case("Should I cancel my order?", CANCEL, QUESTION),
    Case("Would cancelling my order get me a refund faster?", CANCEL, QUESTION),
    Case("Where can I unsubscribe from the newsletter?", UNSUB, QUESTION),
    Case("Can you tell me how to cancel my order?", CANCEL, QUESTION),
    Case("I'd like to know how to unsubscribe from the newsletter.", UNSUB, QUESTION),
    Case("Why did you cancel my order?", CANCEL, QUESTION),
    Case("Did you cancel my order?", CANCEL, QUESTION),
    Case("Has my order been cancelled?", CANCEL, QUESTION),
    Case("What is your cancellation policy?", None),
    Case("Wie kann ich mein Abo kündigen?", CANCEL, QUESTION),
    Case("", UNSUB, subject="Unsubscribe?"),
    Case("Please advise: can I cancel my order?", CANCEL, QUESTION),
    Case("I need to know how to cancel my subscription", CANCEL, QUESTION),
    Case("Do you want me to cancel my order?", CANCEL, QUESTION),
    Case("Cancel my order? Never!", CANCEL),
    Case("How come I can't unsubscribe?", UNSUB, QUESTION),
]

STATEMENTS = [
    Case("My friend told me to cancel my order but I love the mug.", CANCEL, STATEMENT),
    Case("I almost cancelled my order.", CANCEL, STATEMENT),
    Case("I cancelled my order yesterday by phone, this is just to let you know.", CANCEL, STATEMENT),
    Case("You cancelled my order without asking!", CANCEL, STATEMENT),
    Case("I'd hate to cancel my subscription.", CANCEL, STATEMENT),
]

QUOTED_AND_SIGNATURES = [
    Case("Thanks, that was quick!\n\n> please cancel my order 77120\n> Ada", None),
    Case("The tracking works now, thank you.\n\nOn Mon, 3 Jun 2024 at 10:02, Ada <ada@example.org> wrote:\n"
         "> Please cancel my order 77120.\n> Stop sending me emails.", None),
    Case("Where is my parcel? Order 77120.\n\n-- \nTo unsubscribe from our newsletter click here:\n"
         "https://news.example.org/unsubscribe", None),
    Case("Where is my parcel?\n\nKind regards,\nAda Lovelace\nAda's Crafts\n"
         "Unsubscribe: reply STOP", None),
    Case("See below.\n\n-----Original Message-----\nFrom: Ada <ada@example.org>\nSent: Monday\n"
         "Subject: cancel\n\nPlease cancel my order 77120.", None),
    Case("FYI\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.org>\n\n"
         "Please unsubscribe me from your list.", None),
    Case("Yes, the new one arrived fine.\n\n> I'm thinking of cancelling my order.", None),
]

NOT_A_REQUEST = NEGATIONS + MUSINGS + CONDITIONS + PROCESS_QUESTIONS + STATEMENTS + QUOTED_AND_SIGNATURES


@pytest.mark.parametrize("case", NOT_A_REQUEST, ids=str)
def test_a_mention_that_is_not_a_request_never_becomes_one(rules: RuleSet, case: Case) -> None:
    """Negations, musings, conditions, process questions, quotes and signatures never give an explicit request."""
    decision = decide(rules, case)
    assert decision.explicit_request is None, decision.mentions
    assert decision.held_action is None
    if case.intent is not None:
        mention = next((m for m in decision.mentions if m.intent == case.intent), None)
        assert mention is not None, f"the {case.intent} mention was not noticed: {decision.mentions}"
        if case.kind is not None:
            assert mention.kind == case.kind, mention


# ---------------------------------------------------------------- clear requests


CLEAR_REQUESTS = [
    Case("Please cancel my order 77120.", CANCEL),
    Case("Cancel my subscription.", CANCEL),
    Case("Could you please cancel order 881?", CANCEL),
    Case("I want to cancel my order.", CANCEL),
    Case("Take me off your mailing list.", UNSUB),
    Case("Stop sending me emails.", UNSUB),
    Case("If it has not shipped yet, please cancel it.", CANCEL),
    Case("", UNSUB, subject="Unsubscribe"),
    Case("", CANCEL, subject="Cancel order 77120"),
    Case("Unsubscribe me.", UNSUB),
    Case("Could you cancel it?", CANCEL),
    Case("Hi,\n\nplease cancel my order 77120. I found it cheaper elsewhere, sorry!\n\nThanks,\nChloe", CANCEL),
    Case("Please unsubscribe me from your newsletter.", UNSUB),
    Case("I would like to cancel my subscription.", CANCEL),
    Case("Kindly cancel order 12345.", CANCEL),
    Case("Remove me from your mailing list.", UNSUB),
    Case("Can you cancel my order 77120 please?", CANCEL),
    Case("I've decided to cancel my membership.", CANCEL),
    Case("Please cancel my order, it has not shipped yet.", CANCEL),
    Case("Please cancel my order which has not shipped yet.", CANCEL),
    Case("I no longer want the mug, please cancel my order.", CANCEL),
    Case("Cancel order 77120 please", CANCEL),
    Case("Yes, cancel my order.", CANCEL),
    Case("Cancel my order if it hasn't shipped yet.", CANCEL),
    Case("I'd like to cancel my subscription, please.", CANCEL),
    Case("I need to cancel my order 77120 before it ships.", CANCEL),
    Case("Please stop emailing me.", UNSUB),
    Case("I want to unsubscribe.", UNSUB),
    Case("I don't want to receive your emails any more.", UNSUB),
    Case("Hello\nCancel my subscription please, the box is too much for me now.", CANCEL),
    Case("I ordered the wrong size, please cancel my order.", CANCEL),
    Case("Where is my parcel? It has been three weeks. Please cancel my order 77120.", CANCEL),
    Case("Please cancel my order 77120.\n\n> What happens if I cancel?\n> Is there a fee?", CANCEL),
    Case("Bitte stornieren Sie meine Bestellung 77120.", CANCEL),
    Case("Bitte kündigen Sie mein Abo.", CANCEL),
    Case("Ich möchte mein Abo kündigen.", CANCEL),
    Case("Bitte melden Sie mich vom Newsletter ab.", UNSUB),
    Case("UNSUBSCRIBE", UNSUB),
    Case("Please cancel order #77120", CANCEL),
    Case("Stop the newsletter please.", UNSUB),
    Case("please remove me from your mailing list thanks", UNSUB),
    Case("I no longer wish to receive your emails.", UNSUB),
    Case("I am writing to cancel my order 77120.", CANCEL),
    Case("Dear team, please unsubscribe me.", UNSUB),
    Case("Please cancel my order, it has not yet shipped.", CANCEL),
]


@pytest.mark.parametrize("case", CLEAR_REQUESTS, ids=str)
def test_a_clear_request_is_explicit(rules: RuleSet, case: Case) -> None:
    """A customer who clearly asks for a cancellation or an unsubscription gets the change held for confirmation."""
    decision = decide(rules, case)
    assert decision.explicit_request == case.intent, decision.mentions
    assert decision.held_action is not None


def test_a_subject_request_is_taken_back_by_a_hesitant_text(rules: RuleSet) -> None:
    """A subject 'Cancel my order' over a text that hesitates ('not sure yet') is not acted on."""
    case = Case("Hi, I'm not sure yet, it might still arrive. What would you suggest?",
                subject="Cancel my order 77120")
    decision = decide(rules, case)
    assert decision.explicit_request is None
    assert [m.intent for m in decision.mentions] == [CANCEL]


def test_a_reply_subject_is_not_the_customers_request(rules: RuleSet) -> None:
    """'Re: Cancel order 77120' is our subject quoted back; a 'thanks' under it asks for nothing."""
    case = Case("Thanks, got it.", subject="Re: Cancel order 77120")
    assert decide(rules, case).explicit_request is None


def test_the_order_cancelled_is_the_one_named(rules: RuleSet) -> None:
    """'Please cancel my order 77120' holds cancel_order for order 77120."""
    decision = decide(rules, Case("Please cancel my order 77120."))
    assert (decision.held_action, decision.order_number) == ("cancel_order", "77120")


def test_a_subscription_cancellation_holds_the_subscription_action(rules: RuleSet) -> None:
    """'Please cancel my subscription' holds cancel_subscription, not cancel_order."""
    assert decide(rules, Case("Please cancel my subscription.")).held_action == "cancel_subscription"


# ---------------------------------------------------------------- sentences


@pytest.mark.parametrize(("text", "word", "sentence"), [
    ("Hi. Please cancel my order. Thanks.", "cancel", "Please cancel my order."),
    ("I am thinking of\ncancelling my order soon.", "cancelling", "I am thinking of\ncancelling my order soon."),
    ("Order no. 881 arrived. Cancel it?", "Cancel", "Cancel it?"),
    ("e.g. cancel it", "cancel", "e.g. cancel it"),
    ("It costs 12.50 so cancel it", "cancel", "It costs 12.50 so cancel it"),
    ("Thanks!\n\nPlease cancel my order", "Please", "Please cancel my order"),
    ("Two things:\n- cancel my order\n- send the invoice", "cancel", "- cancel my order"),
])
def test_sentence_around_keeps_wrapped_lines_together(text: str, word: str, sentence: str) -> None:
    """The sentence read around a mention spans wrapped lines but stops at sentence ends and paragraphs."""
    start = text.index(word)
    found, begin, end = sentence_around(text, start, start + len(word))
    assert found == sentence
    assert found[begin:end] == word
