"""Reading a customer's answer to "please confirm", the confirmation token, and `supportd pending`.

The answer tests read the customer's own words as ``supportd.intake.owntext`` leaves them (quotes and
signatures already cut away), with the shop's default word lists from ``rules/00-language.yaml``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging

import pytest

from supportd.act import pending
from supportd.base.clock import FakeClock
from supportd.decide.explicit import NO, UNCLEAR, YES, Language, confirmation_answer
from supportd.decide.rules import load_rules
from supportd.service import cli
from supportd.state.ledger import read_state_file

from act.test_confirmations import START, answer, ask, hook_calls, reply_and_run, to_customer, token_of, with_hook
from conftest import REPO, World, mail


@pytest.fixture(scope="module")
def language() -> Language:
    return load_rules(REPO / "rules").language


YES_ANSWERS = [
    "Yes", "yes", "Yes!", "Yes, cancel it.", "Yes please.", "Yes please cancel it.", "Yep.", "Yeah, go ahead",
    "Confirm", "I confirm.", "Confirmed, thanks!", "Go ahead.", "Sure, do it.", "OK", "Okay, cancel it please.",
    "Absolutely, cancel it.", "Please do.", "That's right, cancel it.", "Correct.",
    "Hi, yes, go ahead.", "Hello,\n\nyes please do.", "Good morning, yes, please go ahead.",
    "Dear Example Shop,\n\nyes, I confirm.", "Thank you, yes.", "Thanks! Yes please.", "Yes I'm sure.",
    "Yes, cancel it, I don't need it anymore.", "Yes, order no. 77120", "No problem, go ahead!",
    "Yes please, cancel it if possible.", "Yes \u2013 thank you for checking first.",
    "Ja", "Ja, bitte.", "Ja, bitte stornieren", "Oui", "Oui, merci.", "Oui, annulez",
]

NO_ANSWERS = [
    "No", "no", "NO!", "No, don't cancel", "No, don\u2019t cancel", "No thanks", "No, keep it.", "Nope",
    "Don't cancel.", "Please don't.", "Please do not cancel it.", "Please do NOT cancel", "Absolutely not.",
    "Definitely not!", "I changed my mind, keep my order.", "Never mind.", "Wait, hold on.",
    "Actually no, keep it.", "Hi,\n\nno, please keep the order.", "Hello, no thank you.", "Ok not yet",
    "Nein", "Nein danke", "Nein, nicht stornieren", "Non", "Non merci", "Non, merci.",
]

UNCLEAR_ANSWERS = [
    "", "   ", "Hmm, what would that mean for my other order?", "Hmm", "Thanks", "What?",
    "Yes, but what about my other order?", "Yes and no", "Not sure yet.", "Maybe", "I'm not sure, maybe.",
    "Can you tell me more first?", "Yes, but only if it has not shipped yet.", "Yes, I do not want to cancel",
    "Ok, I don't want to cancel after all", "Yes. No wait, keep it.", "Perhaps later.", "Yes, you may",
    "Please cancel it.", "I will let you know tomorrow.", "Who is this?",
]


@pytest.mark.parametrize("text", YES_ANSWERS)
def test_clear_yes_confirms(language: Language, text: str) -> None:
    """A plain, unqualified yes in the customer's own words (greeting or not, in English, German or French) confirms."""
    assert confirmation_answer(text, language) == YES


@pytest.mark.parametrize("text", NO_ANSWERS)
def test_no_refuses(language: Language, text: str) -> None:
    """A no, a 'please do NOT' or a change of mind refuses: nothing is done."""
    assert confirmation_answer(text, language) == NO


@pytest.mark.parametrize("text", UNCLEAR_ANSWERS)
def test_anything_else_is_unclear(language: Language, text: str) -> None:
    """A question, a doubt, a condition or mixed signals never count as yes."""
    assert confirmation_answer(text, language) == UNCLEAR


def test_restated_request_is_a_yes_only_without_doubt(language: Language) -> None:
    """'Please cancel it' answers yes when it asks for the held change; not with a question or a no in it."""
    assert confirmation_answer("Please cancel it.", language, restates_request=True) == YES
    assert confirmation_answer("Cancel it. What about my refund?", language, restates_request=True) == UNCLEAR
    assert confirmation_answer("Cancel it, or maybe not.", language, restates_request=True) == UNCLEAR


# ---------------------------------------------------------------- tokens


def test_token_has_at_least_128_random_bits_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens come from the secrets module and carry 160 bits; a thousand of them never repeat."""
    raw = base64.urlsafe_b64decode(pending.new_token() + "=")
    assert len(raw) * 8 >= 128
    assert len({pending.new_token() for _ in range(1000)}) == 1000
    monkeypatch.setattr("secrets.token_urlsafe", lambda n: f"from-secrets-{n}")
    assert pending.new_token() == f"from-secrets-{pending.TOKEN_BYTES}"


def test_token_is_stored_only_as_its_sha256(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """After the confirmation is sent and filed, the plain token is in no state file, history or log line."""
    caplog.set_level(logging.DEBUG)
    with_hook(world)
    confirmation = ask(world, FakeClock(START))
    token = token_of(confirmation)
    state_files = sorted((world.root / "state").glob("state.json*"))  # the state, its journal, the generation before
    assert {p.name for p in state_files} >= {"state.json", "state.json.journal", "state.json.prev"}
    for path in state_files:
        assert token not in path.read_text(), path.name
    [held] = read_state_file(world.root / "state" / "state.json")["pending"].values()
    assert held["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    for path in (world.root / "state" / "history").glob("*.jsonl"):
        assert token not in path.read_text()
    assert not [r for r in caplog.records if r.name.startswith("supportd") and token in r.getMessage()]


def test_an_idempotency_key_is_never_reused(world: World) -> None:
    """Two requests on one ticket get different idempotency keys, so a hook never mistakes one for the other."""
    with_hook(world)
    clock = FakeClock(START)
    first = ask(world, clock, "Please cancel my order 77120.")
    second = ask(world, clock, "Please cancel my order 88230 as well.", subject="Re: Cancel order [#1001]")
    assert "cancel order 88230" in second.get_content()
    assert token_of(first) != token_of(second)
    state = read_state_file(world.root / "state" / "state.json")
    keys = [p["idempotency_key"] for p in state["pending"].values()]
    assert len(keys) == 2 and len(set(keys)) == 2


# ---------------------------------------------------------------- supportd pending


def run_cli(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["pending", "--config", str(world.config_path), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_pending_lists_what_waits_for_a_customer(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """`supportd pending` shows each waiting action: id, what it does, who must confirm, until when."""
    with_hook(world)
    ask(world, FakeClock(dt.datetime.now(dt.UTC)))
    code, out = run_cli(world, capsys)
    assert code == 0
    [line] = [x for x in out.splitlines() if x.startswith("c")]
    assert line.split()[0] == "c1001"
    assert "cancel order 77120" in line and "ada@example.org" in line and "expires" in line


def test_pending_says_when_nothing_waits(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """With nothing held, `supportd pending` says so rather than printing an empty table."""
    world.write_config()
    world.deliver(mail("Where is my order 77120?"))
    world.once()
    assert run_cli(world, capsys) == (0, "no pending actions\n")


def test_dropped_action_is_never_performed(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """`supportd pending drop c1001` withdraws it: a later 'yes' performs nothing and the customer is told kindly."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    code, out = run_cli(world, capsys, "drop", "c1001")
    assert code == 0 and "dropped c1001" in out
    assert run_cli(world, capsys) == (0, "no pending actions\n")
    sent = reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    assert hook_calls(calls) == []
    assert "nothing has changed" in to_customer(sent)[0].get_content()


def test_dropping_an_unknown_id_fails_clearly(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Dropping an id that is not waiting exits 1 and says so; nothing else changes."""
    with_hook(world)
    ask(world, FakeClock(START))
    code, out = run_cli(world, capsys, "drop", "c9999")
    assert code == 1 and "no waiting action 'c9999'" in out
    code, out = run_cli(world, capsys, "drop")
    assert code != 0


def test_answer_helper_quotes_the_token(world: World) -> None:
    """The tests' 'No' reply really carries our token in its quote, as a mail client's reply would."""
    with_hook(world)
    confirmation = ask(world, FakeClock(START))
    assert token_of(confirmation).encode() in answer(confirmation, "No.")
