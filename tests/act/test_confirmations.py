"""Irreversible changes only after the customer confirms: end to end against Dovecot and aiosmtpd.

Each test drives supportd with a FakeClock through real mail: a customer asks, supportd holds the
change and asks back, the customer answers (quoting our mail, as mail clients do), and the shop's
hook (a small script that appends its stdin to a file) shows what was really done.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from supportd.base.clock import FakeClock
from supportd.state.ledger import read_state_file

from conftest import OWNER, REPO, World, mail

START = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)  # a Tuesday, within business hours
ADA = "Ada Lovelace <ada@example.org>"
TOKEN = re.compile(r"\[confirm: ([A-Za-z0-9_-]{27})\]")


# ---------------------------------------------------------------- helpers


def with_hook(world: World, action: str = "cancel_order", **settings: Any) -> Path:
    """Configure a hook for ``action`` that appends each call's JSON to a file; returns that file."""
    calls = world.root / f"{action}-calls.jsonl"
    script = world.root / f"{action}-hook.py"
    script.write_text(
        "import sys\n"
        f"with open({str(calls)!r}, 'a') as out:\n"
        "    out.write(sys.stdin.read().strip() + '\\n')\n"
    )
    world.write_config(actions={action: {"command": [sys.executable, str(script)]}}, **settings)
    return calls


def hook_calls(calls: Path) -> list[dict[str, Any]]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines() if line.strip()]


def ask(world: World, clock: FakeClock, text: str = "Please cancel my order 77120.", *, sender: str = ADA,
        subject: str = "Cancel order", headers: dict[str, str] | None = None) -> EmailMessage:
    """The customer asks; supportd runs once; returns the confirmation request it sent."""
    before = len(world.sent())
    world.deliver(mail(text, sender=sender, subject=subject, headers=headers))
    world.once(clock)
    [confirmation] = [m for m in world.sent()[before:] if TOKEN.search(str(m["Subject"]))]
    return confirmation


def answer(ours: EmailMessage, text: str, *, sender: str = ADA, message_id: str | None = None) -> bytes:
    """The customer's reply to one of our mails, quoting it below their own words (token included)."""
    quoted = "\n".join(f"> {line}" for line in ours.get_content().splitlines())
    body = f"{text}\n\nOn Tue, 3 Mar 2026 at 10:00, Example Shop wrote:\n{quoted}\n"
    return mail(body, sender=sender, subject=f"Re: {ours['Subject']}", message_id=message_id,
                headers={"In-Reply-To": ours["Message-ID"], "References": ours["Message-ID"]})


def reply_and_run(world: World, clock: FakeClock, ours: EmailMessage, text: str, **kw: Any) -> list[EmailMessage]:
    """Deliver the customer's answer, run once a few minutes later; returns the mail supportd sent."""
    before = len(world.sent())
    world.deliver(answer(ours, text, **kw))
    clock.advance(minutes=3)
    world.once(clock)
    return world.sent()[before:]


def token_of(confirmation: EmailMessage) -> str:
    found = TOKEN.search(str(confirmation["Subject"]))
    assert found is not None
    return found.group(1)


def to_owner(mails: list[EmailMessage]) -> list[EmailMessage]:
    return [m for m in mails if OWNER in str(m["To"])]


def to_customer(mails: list[EmailMessage], address: str = "ada@example.org") -> list[EmailMessage]:
    return [m for m in mails if address in str(m["To"])]


def history(world: World) -> list[dict[str, Any]]:
    folder = world.root / "state" / "history"
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def pending_state(world: World) -> list[dict[str, Any]]:
    state = read_state_file(world.root / "state" / "state.json")
    return list(state.get("pending", {}).values())


# ---------------------------------------------------------------- 1. yes, no, and yes again


def test_clear_request_is_held_and_the_sender_is_asked(world: World) -> None:
    """'Please cancel my order 77120' asks the sender to confirm, says what would happen, and does nothing yet."""
    calls = with_hook(world)
    confirmation = ask(world, FakeClock(START))
    assert [a.addr_spec for a in confirmation["To"].addresses] == ["ada@example.org"]
    text = confirmation.get_content()
    assert "cancel order 77120" in text
    assert '"yes"' in text and "nothing changes" in text
    assert "Confirmation code: " + token_of(confirmation) in text
    assert hook_calls(calls) == []
    assert [p["state"] for p in pending_state(world)] == ["waiting"]


def test_no_keeps_everything_and_says_so(world: World) -> None:
    """'No, don't cancel', quoting our request and its code, performs nothing and tells the customer so."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    sent = reply_and_run(world, clock, confirmation, "No, don't cancel. I found the receipt.")
    [kept] = to_customer(sent)
    assert "we will not cancel order 77120" in kept.get_content()
    assert "Everything stays as it is" in kept.get_content()
    assert kept["In-Reply-To"] != confirmation["Message-ID"]  # it answers the customer's "no"
    later = reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    assert hook_calls(calls) == []
    assert to_customer(later) == []
    assert [p["state"] for p in pending_state(world)] == ["refused"]


def test_yes_performs_the_hook_exactly_once(world: World) -> None:
    """'Yes, cancel it' runs the hook once with the action as JSON; the same reply again does nothing more."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    sent = reply_and_run(world, clock, confirmation, "Yes, cancel it.", message_id="<yes1@example.org>")
    [call] = hook_calls(calls)
    assert call["action"] == "cancel_order"
    assert call["params"]["order_number"] == "77120"
    assert call["customer"] == "ada@example.org"
    assert call["retry"] is False
    assert call["idempotency_key"]
    [done] = to_customer(sent)
    assert "we have cancelled order 77120" in done.get_content()
    again = reply_and_run(world, clock, confirmation, "Yes, cancel it.", message_id="<yes2@example.org>")
    world.deliver(answer(confirmation, "Yes, cancel it.", message_id="<yes1@example.org>"))  # a duplicate copy
    world.once(clock)
    assert len(hook_calls(calls)) == 1
    assert to_customer(again) == []


def test_restating_the_request_counts_as_yes(world: World) -> None:
    """Answering 'Please cancel it.' to our question is a clear yes in the customer's own words."""
    calls = with_hook(world)
    clock = FakeClock(START)
    reply_and_run(world, clock, ask(world, clock), "Please cancel it.")
    assert len(hook_calls(calls)) == 1


def test_please_do_not_is_a_no(world: World) -> None:
    """'Please do NOT cancel it' starts like 'please do' but is a no: nothing is performed."""
    calls = with_hook(world)
    clock = FakeClock(START)
    sent = reply_and_run(world, clock, ask(world, clock), "Please do not cancel it, I still want it.")
    assert hook_calls(calls) == []
    assert "we will not cancel" in to_customer(sent)[0].get_content()


# ---------------------------------------------------------------- 2. who may confirm


def test_confirmation_goes_to_from_never_to_reply_to(world: World) -> None:
    """A request from victim@ with Reply-To: attacker@ is confirmed with victim@ only (envelope and headers)."""
    with_hook(world)
    confirmation = ask(world, FakeClock(START), sender="Vic Tim <victim@example.org>",
                       headers={"Reply-To": "attacker@evil.example"})
    [envelope] = [m for m in world.sink.messages if TOKEN.search(str(m.message()["Subject"]))]
    assert envelope.rcpt_tos == ["victim@example.org"]
    assert [a.addr_spec for a in confirmation["To"].addresses] == ["victim@example.org"]
    assert "attacker" not in str(confirmation["Cc"]) + str(confirmation["Bcc"])
    assert not any("attacker@evil.example" in m.rcpt_tos for m in world.sink.messages)


def test_confirmation_from_another_address_is_refused_and_reported(world: World) -> None:
    """The token from another address performs nothing, the owner is told, and the real customer can still confirm."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    sent = reply_and_run(world, clock, confirmation, "Yes, cancel it.", sender="Mallory <mallory@evil.example>")
    assert hook_calls(calls) == []
    assert to_customer(sent, "mallory@evil.example") == []
    [alert] = to_owner(sent)
    assert "wrong address" in str(alert["Subject"])
    assert "mallory@evil.example" in alert.get_content()
    reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    assert len(hook_calls(calls)) == 1


# ---------------------------------------------------------------- 3. expiry, single use, rate limit


def test_expired_token_performs_nothing_and_says_so_kindly(world: World) -> None:
    """After 72 hours a 'yes' changes nothing; the customer hears the request expired and how to ask again."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    clock.advance(hours=72, minutes=1)
    world.once(clock)  # the minutely job marks it expired
    sent = reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    assert hook_calls(calls) == []
    [kind] = to_customer(sent)
    assert "expired" in kind.get_content() and "nothing has changed" in kind.get_content()
    assert [p["state"] for p in pending_state(world)] == ["expired"]
    assert any(r["type"] == "pending" and r["outcome"] == "expired" for r in history(world))


def test_configured_shorter_expiry(world: World) -> None:
    """With limits.confirmation_hours: 2, a 'yes' three hours later performs nothing."""
    calls = with_hook(world, limits={"confirmation_hours": 2})
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    clock.advance(hours=3)
    sent = reply_and_run(world, clock, confirmation, "Yes please.")
    assert hook_calls(calls) == []
    assert "expired" in to_customer(sent)[0].get_content()


def test_a_yes_just_before_expiry_still_counts(world: World) -> None:
    """The expiry is a real limit, not a rounding: a 'yes' at 71 hours performs the action."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    clock.advance(hours=71)
    reply_and_run(world, clock, confirmation, "Yes please.")
    assert len(hook_calls(calls)) == 1


def test_repeated_bad_tokens_are_rate_limited(world: World) -> None:
    """Eight made-up codes from one sender get at most five kind replies and one alert to the owner."""
    for number in range(8):
        code = f"{number}" * 27
        world.deliver(mail(f"Yes, confirm: {code}", subject=f"Re: Cancel [confirm: {code}]",
                           sender="Eve <eve@example.org>"))
    world.once(FakeClock(START))
    replies = to_customer(world.sent(), "eve@example.org")
    assert len(replies) == 5
    assert all("nothing has changed" in m.get_content() for m in replies)
    assert len([m for m in to_owner(world.sent()) if "invalid confirmation codes" in str(m["Subject"])]) == 1


# ---------------------------------------------------------------- 4. unclear answers


def test_unclear_answer_gets_one_clarifying_reply(world: World) -> None:
    """'Hmm, what would that mean for my other order?' gets one question back and the owner is told; twice gets one."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    first = reply_and_run(world, clock, confirmation, "Hmm, what would that mean for my other order?")
    [clarify] = to_customer(first)
    assert '"yes"' in clarify.get_content() and '"no"' in clarify.get_content()
    [alert] = to_owner(first)
    assert "what would that mean for my other order" in alert.get_content()
    second = reply_and_run(world, clock, confirmation, "I am still not sure what happens to my other order.")
    assert to_customer(second) == []
    assert hook_calls(calls) == []
    assert [p["state"] for p in pending_state(world)] == ["waiting"]


def test_yes_to_the_clarifying_question_confirms(world: World) -> None:
    """A 'yes' answering our clarifying question (which carries no code) still confirms the held action."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    [clarify] = to_customer(reply_and_run(world, clock, confirmation, "What would that mean for my refund?"))
    reply_and_run(world, clock, clarify, "Yes, go ahead.")
    assert len(hook_calls(calls)) == 1


# ---------------------------------------------------------------- 5. side remarks


def test_tentative_mention_holds_nothing_and_offers_options(world: World) -> None:
    """'I'm thinking of unsubscribing' holds nothing; the reply offers the options; the mention is recorded."""
    calls = with_hook(world, "unsubscribe")
    world.deliver(mail("Where is my order 77120? I'm thinking of unsubscribing from your emails.",
                       subject="Order"))
    world.once(FakeClock(START))
    [reply] = to_customer(world.sent())
    assert not TOKEN.search(str(reply["Subject"]))
    assert "send fewer" in reply.get_content() and "Nothing changes unless you ask" in reply.get_content()
    assert pending_state(world) == []
    assert hook_calls(calls) == []
    [record] = [r for r in history(world) if r["type"] == "message"]
    assert record["tentative"] == ["unsubscribe"]
    assert record["held_action"] is None


# ---------------------------------------------------------------- 6. exactly once


def test_two_yes_replies_in_one_pass_perform_once(world: World) -> None:
    """Two 'yes' replies arriving together run the hook once and tell the customer once."""
    calls = with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    before = len(world.sent())
    world.deliver(answer(confirmation, "Yes, cancel it."))
    world.deliver(answer(confirmation, "Yes please, cancel it!"))
    world.once(clock)
    assert len(hook_calls(calls)) == 1
    assert len(to_customer(world.sent()[before:])) == 1


def test_crash_between_hook_and_record_reruns_with_the_same_key(world: World) -> None:
    """A kill right after the hook did its work re-runs it on restart with the same key: the effect happens once."""
    world.write_config()
    calls, effects, crashed = (world.root / n for n in ("calls.jsonl", "effects.txt", "crashed"))
    script = world.root / "idempotent-hook.py"
    script.write_text(
        "import json, os, signal, sys\n"
        "call = json.load(sys.stdin)\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(call) + '\\n')\n"
        f"done = open({str(effects)!r}).read().split() if os.path.exists({str(effects)!r}) else []\n"
        "if call['idempotency_key'] not in done:\n"
        f"    open({str(effects)!r}, 'a').write(call['idempotency_key'] + '\\n')\n"
        f"if not os.path.exists({str(crashed)!r}):\n"
        f"    open({str(crashed)!r}, 'w').close()\n"
        "    os.kill(os.getppid(), signal.SIGKILL)\n"
    )
    world.write_config(actions={"cancel_order": {"command": [sys.executable, str(script)]}})
    confirmation = ask(world, FakeClock(dt.datetime.now(dt.UTC)))
    world.deliver(answer(confirmation, "Yes, cancel it."))
    command = [sys.executable, "-m", "supportd", "once", "--config", str(world.config_path)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, timeout=120, check=False)
    assert first.returncode == -signal.SIGKILL
    assert [m["Message-ID"] for m in to_customer(world.sent())] == [confirmation["Message-ID"]]  # none told yet
    second = subprocess.run(command, cwd=REPO, capture_output=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr.decode()
    keys = [json.loads(line)["idempotency_key"] for line in calls.read_text().splitlines()]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert json.loads(calls.read_text().splitlines()[1])["retry"] is True
    assert effects.read_text().split() == keys[:1]
    assert len([m for m in to_customer(world.sent()) if "we have cancelled" in m.get_content()]) == 1


def test_without_a_hook_the_owner_does_it_by_hand(world: World) -> None:
    """No hook: the owner gets everything needed to do it by hand, the customer hears when, the ticket stays open."""
    world.write_config()
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    sent = reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    [owner_mail] = to_owner(sent)
    text = owner_mail.get_content()
    assert "please cancel order 77120" in str(owner_mail["Subject"])
    for fact in ("cancel order 77120", "ada@example.org", "Order: 77120", "Ticket: 1001", "supportd resolve 1001"):
        assert fact in text
    [told] = to_customer(sent)
    assert "We will cancel order 77120 by" in told.get_content()
    state = read_state_file(world.root / "state" / "state.json")
    [ticket] = state["tickets"].values()
    assert ticket["state"] == "open" and ticket["due"]


def test_unsubscribe_inside_a_defect_report_leaves_the_defect_ticket_open(world: World) -> None:
    """Confirming 'unsubscribe me' from a broken-mug mail stops the emails but keeps the mug's ticket open."""
    calls = with_hook(world, "unsubscribe")
    clock = FakeClock(START)
    confirmation = ask(world, clock, "The mug arrived broken. Also, please unsubscribe me from your newsletter.",
                       subject="Broken mug")
    reply_and_run(world, clock, confirmation, "Yes.")
    assert len(hook_calls(calls)) == 1
    state = read_state_file(world.root / "state" / "state.json")
    [ticket] = state["tickets"].values()
    assert ticket["intent"] == "defect" and ticket["state"] == "open"


def test_waiting_for_the_customer_raises_no_overdue_alarm(world: World) -> None:
    """A held cancellation waits on the customer: two days without an answer send the owner no 'overdue' alert."""
    with_hook(world)
    clock = FakeClock(START)
    ask(world, clock)
    clock.advance(hours=48)
    world.once(clock)
    assert [m["Subject"] for m in to_owner(world.sent()) if "overdue" in str(m["Subject"])] == []


def test_answer_naming_another_order_confirms_nothing(world: World) -> None:
    """'Please cancel order 88230 instead', answering our request about 77120, does not cancel 77120."""
    calls = with_hook(world)
    clock = FakeClock(START)
    sent = reply_and_run(world, clock, ask(world, clock), "Please cancel order 88230 instead.")
    assert hook_calls(calls) == []
    assert len(to_customer(sent)) == 1 and len(to_owner(sent)) == 1  # one question back; the owner sees it


def test_done_mail_says_how_to_undo(world: World) -> None:
    """The shop's 'undo' text for the action reaches the customer with the confirmation and the done mail."""
    calls = with_hook(world, "unsubscribe")
    world.write_config(actions={"unsubscribe": {"command": [sys.executable, str(world.root / "unsubscribe-hook.py")],
                                                "undo": "Want us back? Reply 'subscribe' any time."}})
    clock = FakeClock(START)
    confirmation = ask(world, clock, "Please unsubscribe me.", subject="Newsletter")
    assert "Want us back?" in confirmation.get_content()
    [done] = to_customer(reply_and_run(world, clock, confirmation, "Yes"))
    assert "stopped sending you our emails" in done.get_content() and "Want us back?" in done.get_content()
    assert len(hook_calls(calls)) == 1


def test_failing_hook_is_retried_then_handed_to_the_owner(world: World) -> None:
    """A hook that exits 1 is tried three times (2 and 4 minutes apart), then the owner is asked to do it."""
    calls = world.root / "calls.jsonl"
    script = world.root / "broken-hook.py"
    script.write_text(f"import sys\nopen({str(calls)!r}, 'a').write(sys.stdin.read() + '\\n')\n"
                      "sys.stderr.write('shop API says 503')\nsys.exit(1)\n")
    world.write_config(actions={"cancel_order": {"command": [sys.executable, str(script)]}})
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    tries = []
    for minutes in (1, 2, 3, 2):  # retries are due 2, then 4 minutes after a failure
        clock.advance(minutes=minutes)
        world.once(clock)
        tries.append(len(hook_calls(calls)))
    assert tries == [1, 2, 2, 3]
    assert [c["retry"] for c in hook_calls(calls)] == [False, True, True]
    sent = world.sent()
    [alert] = [m for m in to_owner(sent) if "could not be made" in str(m["Subject"])]
    assert "exit 1: shop API says 503" in alert.get_content()
    assert not [m for m in to_customer(sent) if "we have cancelled" in m.get_content()]
    assert [p["state"] for p in pending_state(world)] == ["failed"]


def test_hook_that_keeps_killing_supportd_is_handed_to_the_owner(world: World) -> None:
    """After three restarts caught mid-hook, supportd stops running the hook and asks the owner instead."""
    calls = world.root / "calls.jsonl"
    script = world.root / "killer-hook.py"
    script.write_text(f"import os, signal, sys\nopen({str(calls)!r}, 'a').write(sys.stdin.read() + '\\n')\n"
                      "os.kill(os.getppid(), signal.SIGKILL)\n")
    world.write_config(actions={"cancel_order": {"command": [sys.executable, str(script)]}})
    confirmation = ask(world, FakeClock(dt.datetime.now(dt.UTC)))
    world.deliver(answer(confirmation, "Yes, cancel it."))
    command = [sys.executable, "-m", "supportd", "once", "--config", str(world.config_path)]
    codes = [subprocess.run(command, cwd=REPO, capture_output=True, timeout=120, check=False).returncode
             for _ in range(4)]
    assert codes == [-signal.SIGKILL] * 3 + [0]
    assert len(hook_calls(calls)) == 3
    assert [m for m in to_owner(world.sent()) if "could not be made" in str(m["Subject"])]


def test_no_before_a_retried_hook_stops_it(world: World) -> None:
    """The hook failed once and waits for its retry; a 'No, wait' now stops it: it is never run again."""
    calls, worked = world.root / "calls.jsonl", world.root / "worked-once"
    script = world.root / "flaky-hook.py"
    script.write_text(f"import os, sys\nopen({str(calls)!r}, 'a').write(sys.stdin.read() + '\\n')\n"
                      f"sys.exit(0 if os.path.exists({str(worked)!r}) else 1)\n")
    world.write_config(actions={"cancel_order": {"command": [sys.executable, str(script)]}})
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    worked.touch()
    sent = reply_and_run(world, clock, confirmation, "No, wait, don't cancel it!")
    clock.advance(minutes=10)
    world.once(clock)
    assert len(hook_calls(calls)) == 1
    assert "we will not cancel order 77120" in to_customer(sent)[0].get_content()
    assert [p["state"] for p in pending_state(world)] == ["refused"]


def test_no_after_it_was_done_reaches_a_person(world: World) -> None:
    """A 'No, wait!' after the cancellation was done cannot undo it by itself: the ticket opens for a person."""
    with_hook(world)
    clock = FakeClock(START)
    confirmation = ask(world, clock)
    reply_and_run(world, clock, confirmation, "Yes, cancel it.")
    reply_and_run(world, clock, confirmation, "No, wait, I did not mean it!")
    state = read_state_file(world.root / "state" / "state.json")
    [ticket] = state["tickets"].values()
    assert ticket["state"] == "open" and ticket["due"]
