"""The owner's rules: what the default rules read in real questions, and how a broken rule file is reported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supportd.base.errors import InvalidFiles
from supportd.decide import rules as rules_module
from supportd.decide.rules import RuleSet, load_rules
from supportd.deliver.replies import Replies
from supportd.intake.message import parse
from supportd.quality.intents import TARGETS, measure, read_examples

from conftest import CORPUS, REPO, mail, need_corpus_file
from planning import offline_context, plan_for

DEV_SET = CORPUS / "intents" / "dev.csv"
REPLIES = REPO / "replies"


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(REPO / "rules", Replies(REPLIES).names())


# ---------------------------------------------------------------- the dev set


def test_default_rules_meet_the_targets_on_the_dev_set(rules: RuleSet) -> None:
    """Cancellation and delivery questions from a public dataset are recognised (recall >= 96%, precision >= 97%)."""
    need_corpus_file(DEV_SET)
    result = measure(read_examples(DEV_SET), rules)
    assert set(TARGETS) <= set(result.scores)
    assert result.failed_targets() == []


# ---------------------------------------------------------------- the primary intent


def test_a_defect_with_a_remark_about_unsubscribing_is_answered_as_a_defect() -> None:
    """A broken mug plus 'thinking of unsubscribing': the reply is about the mug and offers the email options."""
    body = ("Hello,\n\nthe mug I ordered (order 77121) arrived with a big crack in the handle.\n"
            "Honestly, I'm thinking of unsubscribing from your newsletter too, you send a lot.\n\nBen")
    plan = plan_for(offline_context(), parse(mail(body, subject="Cracked mug")))
    decision = plan.decision
    assert decision.primary_intent == "defect"
    assert "unsubscribe" in decision.intents
    assert decision.explicit_request is None and plan.new_pending is None
    assert [(m.intent, m.kind) for m in decision.mentions] == [("unsubscribe", "musing")]
    reply = plan.customer_reply
    assert reply is not None
    text = reply.summary()["text"]
    assert "sorry" in text and "77121" in text  # the defect is answered
    assert "Nothing changes unless you ask" in text and "fewer" in text  # the remark gets options, not an action
    assert "confirm" not in reply.summary()["subject"].lower()


def test_the_problem_comes_before_the_side_remark(rules: RuleSet) -> None:
    """A missing parcel with 'I might cancel' is a delivery question first, and nothing is held."""
    decision = rules.decide(parse(mail("Where is my parcel? It's been two weeks. I might cancel my order.",
                                       subject="Order 77120")))
    assert decision.primary_intent == "delivery_status"
    assert decision.intents == ("delivery_status", "cancellation")
    assert decision.explicit_request is None


def test_the_decision_names_the_rule_and_the_words(rules: RuleSet) -> None:
    """The decision says which rule decided and quotes the words that matched."""
    decision = rules.decide(parse(mail("The teapot arrived cracked.", subject="Teapot")))
    assert decision.rule == "broken-or-damaged"
    assert "'cracked'" in decision.why and "The teapot arrived cracked." in decision.why


def test_mail_no_rule_understands_goes_to_the_fallback(rules: RuleSet) -> None:
    """A message about nothing the rules know is 'other', and says so."""
    decision = rules.decide(parse(mail("Do you sell gift cards?", subject="Gift cards")))
    assert (decision.primary_intent, decision.rule, decision.why) == ("other", "other", "no rule matched")


@pytest.mark.parametrize(("body", "intent"), [
    ("Please stop sending me broken mugs, the third one arrived in pieces.", "defect"),
    ("I don't want to receive a damaged parcel again.", "defect"),
    ("My card does not work at the checkout.", "other"),
    ("Please remove my old address from my account.", "other"),
])
def test_email_words_without_an_email_are_not_an_unsubscription(rules: RuleSet, body: str, intent: str) -> None:
    """'Stop sending me broken mugs' is a complaint about mugs, not a request to stop the emails."""
    decision = rules.decide(parse(mail(body, subject="Hello")))
    assert decision.primary_intent == intent
    assert "unsubscribe" not in decision.intents


# ---------------------------------------------------------------- checking rule files

GIFT = "intent: gift\npriority: 60\nreply: other\nrules:\n  - name: gift-wrap\n    message: [gift wrap]\n"

BROKEN_FILES = [
    # (what is wrong, the file, the line to report, words the report must contain)
    ("unknown key", GIFT.replace("    message:", "    mesage:"), 6,
     "unknown key 'rule.mesage' (did you mean 'message'?)"),
    ("unknown top-level key", GIFT.replace("priority:", "priorty:"), 2, "did you mean 'priority'?"),
    ("unknown key inside not", GIFT + "    not:\n      txt: [paper]\n", 8, "did you mean 'text'?"),
    ("wrong type", GIFT.replace("priority: 60", "priority: high"), 2, "priority must be a whole number, not text"),
    ("wrong type in a rule", GIFT + "    priority: [1]\n", 7, "priority must be a whole number, not a list"),
    ("bad regex", GIFT.replace("[gift wrap]", "{regex: 'gift (wrap'}"), 6, "bad regular expression 'gift (wrap'"),
    ("bad regex, second of a list", GIFT.replace("[gift wrap]", "\n      regex:\n        - 'gift'\n"
                                                 "        - 'wrap[ping'"), 9, "bad regular expression 'wrap[ping'"),
    ("missing reply template", GIFT.replace("reply: other", "reply: gift_wrap"), 3,
     "reply template 'gift_wrap' not found"),
    ("missing reply template in a rule", GIFT + "    reply: giftwrap\n", 7, "reply template 'giftwrap' not found"),
    ("duplicate rule name across files", GIFT.replace("gift-wrap", "broken-or-damaged"), 5,
     "rule name 'broken-or-damaged' is also used at rules/10-defect.yaml:"),
    ("YAML syntax error", GIFT.replace("[gift wrap]", "[gift wrap") + "  - name: ribbon\n    text: [ribbon]\n", 6,
     "the '[' list opened on this line is not closed"),
    ("unclosed bracket at the end of the file", GIFT.replace("[gift wrap]", "[gift wrap"), 6,
     "the '[' list opened on this line is not closed"),
    ("unclosed quote", GIFT.replace("[gift wrap]", "\"gift wrap"), 6, "the quote opened on this line is not closed"),
    ("bad indentation", GIFT + "   reply: other\n", 7, "YAML syntax"),
    ("a not with nothing inside", GIFT + "    not:\n", 7, "'not' needs a condition inside"),
    ("a not with an empty mapping", GIFT + "    not: {}\n", 7, "'not' needs a condition inside"),
    ("an empty all", GIFT + "    all: []\n", 7, "'all' lists no conditions"),
    ("an empty item in any", GIFT + "    any:\n      - text: [ribbon]\n      - {}\n", 9,
     "'any' needs a condition inside"),
    ("an empty word list", GIFT.replace("[gift wrap]", "[]"), 6, "'message' lists no words or regex"),
    ("an empty words: list", GIFT.replace("[gift wrap]", "{words: []}"), 6, "'message' lists no words or regex"),
    ("a rule without a condition", GIFT.replace("    message: [gift wrap]\n", "    reply: other\n"), 5,
     "rule 'gift-wrap' has no condition"),
    ("an unknown action", GIFT + "    actions: [refund_now]\n", 7, "unknown action 'refund_now'"),
    ("a key given twice", GIFT + "    message: [ribbon]\n", 7, "'message' is given twice"),
]


def broken_rules_folder(tmp_path: Path, name: str, text: str) -> Path:
    """The default rules plus one broken file, as an owner's edit would leave them."""
    folder = tmp_path / "rules"
    shutil.copytree(REPO / "rules", folder)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(InvalidFiles) as caught:
        load_rules(folder, Replies(REPLIES).names())
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(("what", "text", "line", "words"), BROKEN_FILES, ids=[case[0] for case in BROKEN_FILES])
def test_a_broken_rule_file_is_reported_at_its_line(tmp_path: Path, what: str, text: str, line: int,
                                                     words: str) -> None:
    """Every mistake in a rule file is reported as rules/FILE.yaml:LINE: what is wrong, on the right line."""
    problems = problems_of(broken_rules_folder(tmp_path, "50-gift.yaml", text))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"rules/50-gift.yaml:{line}: "), problems
    assert words in problems[0]


def test_an_empty_language_list_is_reported(tmp_path: Path) -> None:
    """'negations: []' in the language file is reported at its line rather than silently matching nothing."""
    folder = broken_rules_folder(tmp_path, "50-gift.yaml", GIFT)
    language = folder / "00-language.yaml"
    lines = language.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("negations:"))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("]"))
    language.write_text("\n".join([*lines[:start], "  negations: []", *lines[end + 1:]]) + "\n", encoding="utf-8")
    problems = problems_of(folder)
    assert problems == [f"rules/00-language.yaml:{start + 1}: language.negations lists no words; add some"]


def test_irreversible_intents_need_the_lists_that_hold_a_mention_back(tmp_path: Path) -> None:
    """Without a language file, a cancellation rule cannot tell 'I don't want to cancel' from a request: refused."""
    folder = broken_rules_folder(tmp_path, "50-gift.yaml", GIFT)
    (folder / "00-language.yaml").unlink()
    problems = problems_of(folder)
    assert any(p.startswith("rules/30-cancellation.yaml:3: intent 'cancellation' is irreversible") for p in problems)
    assert any(p.startswith("rules/40-unsubscribe.yaml:2: intent 'unsubscribe' is irreversible") for p in problems)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Two broken files give two reports, in file order, so the owner fixes everything in one go."""
    folder = broken_rules_folder(tmp_path, "50-gift.yaml", GIFT.replace("priority: 60", "priority: high"))
    (folder / "60-ribbon.yaml").write_text(GIFT.replace("gift", "ribbon").replace("message:", "mesage:"))
    problems = problems_of(folder)
    assert [p.split(": ")[0] for p in problems] == ["rules/50-gift.yaml:2", "rules/60-ribbon.yaml:6"]


# ---------------------------------------------------------------- supportd check and try, as the owner runs them


def write_config(root: Path, rules: Path) -> Path:
    (root / "imap-password").write_text("not-used-by-check\n")
    config = root / "supportd.yaml"
    config.write_text(
        "shop:\n  name: Example Shop\n  support_address: support@shop.example\n"
        "  owner_address: owner@shop.example\n  contact_footer: Example Shop, +49 30 1234567\n"
        "imap:\n  host: 127.0.0.1\n  port: 143\n  tls: none\n  user: support@shop.example\n"
        "  password_file: imap-password\n"
        "smtp:\n  host: 127.0.0.1\n  port: 587\n  tls: none\n"
        f"paths:\n  state: state\n  rules: {rules.name}\n  replies: {REPLIES}\n", encoding="utf-8")
    return config


def supportd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supportd", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_check_accepts_the_default_rules(tmp_path: Path) -> None:
    """'supportd check' on the default rules says ok and exits 0."""
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    result = supportd("check", "--config", str(write_config(tmp_path, tmp_path / "rules")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: ")


def test_check_lists_every_broken_line_and_exits_2(tmp_path: Path) -> None:
    """'supportd check' prints one rules/FILE.yaml:LINE line per problem and exits 2."""
    folder = broken_rules_folder(tmp_path, "50-gift.yaml", GIFT.replace("    message:", "    mesage:"))
    (folder / "60-ribbon.yaml").write_text(GIFT.replace("gift", "ribbon").replace("[ribbon wrap]", "[ribbon"))
    (folder / "70-box.yaml").write_text(GIFT.replace("gift", "box").replace("[box wrap]", "{regex: 'box ('}"))
    result = supportd("check", "--config", str(write_config(tmp_path, folder)))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        "rules/50-gift.yaml:6", "rules/60-ribbon.yaml:6", "rules/70-box.yaml:6"]
    assert "did you mean 'message'?" in lines[0]
    assert "not closed" in lines[1]
    assert "bad regular expression" in lines[2]


def test_try_shows_the_rule_that_decided_and_why(tmp_path: Path) -> None:
    """'supportd try --json' names the deciding rule and quotes the words that matched."""
    message = tmp_path / "mug.eml"
    message.write_bytes(mail("Hi, the mug arrived with a cracked handle. Order 77121.", subject="Mug"))
    result = supportd("try", "--json", str(message))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["rule"] == "broken-or-damaged"
    assert "'cracked'" in answer["why"] and "cracked handle" in answer["why"]
    assert answer["primary_intent"] == "defect"


# ---------------------------------------------------------------- typos, implicit requests, accounts


@pytest.mark.parametrize(("body", "intent", "order_number"), [
    ("where can i cancfel order 113542617735902", "cancellation", "113542617735902"),
    ("I need help cacnelling my purchqse 77120", "cancellation", "77120"),
    ("I want to teack order 77120", "delivery_status", "77120"),
    ("cancelling order113542617735902 please", "cancellation", "113542617735902"),
    ("would it be possible to locate purchase113542617735902?", "delivery_status", "113542617735902"),
    ("please track myorder 77120", "delivery_status", "77120"),
])
def test_typos_and_glued_numbers_are_read_as_meant(rules: RuleSet, body: str, intent: str,
                                                   order_number: str) -> None:
    """A letter too many, missing, changed or swapped, and an order number glued on, still find the rule."""
    decision = rules.decide(parse(mail(body, subject="")))
    assert (decision.primary_intent, decision.order_number) == (intent, order_number)


@pytest.mark.parametrize("body", [
    "My older order arrived fine, thanks.",
    "My mother has cancer, I may be slow to answer about the mug colour.",
    "The truck driver was very friendly.",
])
def test_real_words_near_rule_words_are_not_typos(rules: RuleSet, body: str) -> None:
    """'older', 'cancer', 'truck' stay what they are: no cancellation or delivery question appears."""
    decision = rules.decide(parse(mail(body, subject="Hello")))
    assert not {"cancellation", "delivery_status"} & set(decision.intents)


@pytest.mark.parametrize("body", ["I don't want order 77120.", "I can no longer afford order 77120.",
                                  "Sorry, I can't afford this order any more."])
def test_implicit_cancellation_requests_are_cancellations(rules: RuleSet, body: str) -> None:
    """'I don't want order X' asks to cancel it without the word."""
    assert rules.decide(parse(mail(body, subject="Order"))).primary_intent == "cancellation"


@pytest.mark.parametrize("body", ["Please cancel my Gold account.", "How do I delete my account?",
                                  "I don't use the freemium account any more, I need to cancel it.",
                                  "Bitte löschen Sie mein Kundenkonto."])
def test_account_cancellation_is_its_own_intent_and_holds_no_order_action(body: str) -> None:
    """'Cancel my Gold account' is about the account: no order is held for cancellation, a person answers."""
    plan = plan_for(offline_context(), parse(mail(body, subject="Account")))
    assert plan.decision.primary_intent == "account_cancellation"
    assert "cancellation" not in plan.decision.intents and plan.new_pending is None
    assert plan.customer_reply is not None and plan.new_ticket is not None and plan.new_ticket["follow_up"]


# ---------------------------------------------------------------- which intent leads


def test_a_clear_cancellation_leads_over_its_reason() -> None:
    """'Please cancel my order. I ordered the wrong colour.' is a cancellation (held), not a defect."""
    plan = plan_for(offline_context(), parse(mail("Please cancel my order #77120. I ordered the wrong colour.",
                                                  subject="Order 77120")))
    assert plan.decision.primary_intent == "cancellation"
    assert plan.held_action == {"action": "cancel_order", "confirm_to": "ada@example.org"}


def test_a_refused_change_never_leads(rules: RuleSet) -> None:
    """'I don't want to cancel my subscription! I just moved' is not a cancellation, and nothing is held."""
    body = "I don't want to cancel my subscription! I just moved, new address: 5 Elm Street, Leeds."
    decision = rules.decide(parse(mail(body, subject="New address")))
    assert decision.primary_intent != "cancellation" and decision.explicit_request is None
    assert [(m.intent, m.kind) for m in decision.mentions] == [("cancellation", "negated")]


def test_a_gift_address_question_is_not_a_delivery_status_question(rules: RuleSet) -> None:
    """'Can I have it sent to my sister?' asks where to send it, not where it is."""
    decision = rules.decide(parse(mail("Can I have it sent to my sister? It's a birthday present.", subject="Gift")))
    assert decision.primary_intent != "delivery_status"


# ---------------------------------------------------------------- German


@pytest.mark.parametrize(("body", "intent"), [
    ("Wo bleibt meine Bestellung 77120?", "delivery_status"),
    ("Ich habe mein Paket immer noch nicht erhalten.", "delivery_status"),
    ("Die Tasse ist kaputt angekommen.", "defect"),
    ("Die Schuhe sind zu klein.", "defect"),
    ("Bitte stornieren Sie meine Bestellung 77120.", "cancellation"),
    ("Ich möchte mein Abo kündigen.", "cancellation"),
    ("Bitte melden Sie mich vom Newsletter ab.", "unsubscribe"),
    ("Laut Sendungsverfolgung zugestellt, aber kein Paket da.", "lost_parcel"),
    ("Bitte löschen Sie mein Konto.", "account_cancellation"),
    ("Haben Sie am Samstag geöffnet?", "other"),
])
def test_german_mail_finds_every_intent(rules: RuleSet, body: str, intent: str) -> None:
    """Every default intent has German rules."""
    assert rules.decide(parse(mail(body, subject=""))).primary_intent == intent


def sentence_char_by_char(text: str, start: int, end: int) -> tuple[str, int, int]:
    """``sentence_around`` as it was written first: asking of every character whether it ends a sentence."""
    left, lowest = start, max(0, start - rules_module.SENTENCE_REACH)
    while left > lowest and not rules_module._ends_sentence(text, left - 1):
        left -= 1
    right, highest = end, min(len(text), end + rules_module.SENTENCE_REACH)
    while right < highest and not rules_module._ends_sentence(text, right):
        right += 1
    if right < len(text) and text[right] in ".!?":
        right += 1
    while left < start and text[left].isspace():
        left += 1
    while right > end and text[right - 1].isspace():
        right -= 1
    return text[left:right], start - left, end - left


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["cancel my order", ".", ". ", "!", "?", "\n", "\n\n", " ", "e.g.", "no. 881",
                                 "12.50", "- ", "> ", "1) ", "  \n", "x" * 300]), max_size=40).map("".join),
       st.data())
def test_a_sentence_ends_where_asking_every_character_says(text: str, data: st.DataObject) -> None:
    """The search for a sentence's ends, which skips characters that cannot end one, finds the same sentence."""
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    assert rules_module.sentence_around(text, start, end) == sentence_char_by_char(text, start, end)
