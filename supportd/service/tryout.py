"""``supportd try``: what supportd would do with some messages, without sending or keeping anything.

Each message goes through the same guard, rules and templates as in the daemon, against an empty
in-memory ledger (so every message is judged as if it were the first from its sender). A message
that cannot be read still gets an answer, with an ``error`` key, and the exit code says so; it
never ends the run.
"""

from __future__ import annotations

import json
import secrets
import sys
import traceback
from pathlib import Path
from typing import Any

from supportd.base.clock import SystemClock
from supportd.base.config import Config
from supportd.decide.actions import Plan, plan_message
from supportd.decide.budget import DecisionTimeout, decision_budget
from supportd.intake.message import parse
from supportd.service.context import Context
from supportd.service.ownerfiles import load_rules_and_replies
from supportd.state.ledger import Ledger

EMPTY_ANSWER: dict[str, Any] = {
    "primary_intent": None, "intents": [], "explicit_request": None, "auto_reply": False,
    "skip_reason": None, "rule": None, "reply": None, "held_action": None, "own_text": None, "faq": None,
}

# Line breaks to str.splitlines() that JSON leaves unescaped: one answer must stay one line.
LINE_BREAKS_ESCAPED = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def try_context(config: Config) -> Context:
    """The daemon's rules and replies over an empty in-memory ledger: decisions without any state."""
    rules, replies = load_rules_and_replies(config)
    clock = SystemClock()
    return Context(config=config, rules=rules, replies=replies, ledger=Ledger.in_memory(clock), clock=clock,
                   secret=secrets.token_bytes(32))


def decide(ctx: Context, raw: bytes) -> Plan:
    """Parse and plan one message within the per-message time limit, as the daemon does."""
    with decision_budget(ctx.config.limits.decision_seconds):
        return plan_message(ctx, parse(raw), key=None)


def try_messages(config: Config, paths: list[Path], as_json: bool) -> int:
    ctx = try_context(config)
    failures = 0
    for path in paths:
        answer = try_one(ctx, path)
        failures += 1 if "error" in answer else 0
        if as_json:
            print(json.dumps(answer, ensure_ascii=False).translate(LINE_BREAKS_ESCAPED))
        else:
            print(describe(answer))
        sys.stdout.flush()
    return 1 if failures else 0


def try_one(ctx: Context, path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return {"file": str(path), **EMPTY_ANSWER, "skip_reason": "unreadable", "error": f"cannot read: {exc.strerror}"}
    try:
        plan = decide(ctx, raw)
    except DecisionTimeout as exc:
        return {"file": str(path), **EMPTY_ANSWER, "skip_reason": f"quarantined: {exc}", "error": str(exc)}
    except Exception as exc:  # the contract: every message gets an answer, errors included
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return {"file": str(path), **EMPTY_ANSWER, "skip_reason": "error",
                "error": f"{type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})"}
    # own_text: the customer's own words exactly as the rules read them
    faq = plan.decision.faq
    return {"file": str(path), **plan.summary(), "own_text": plan.msg.own_text,
            "faq_unfilled": list(faq.unfilled) if faq else []}


def describe(answer: dict[str, Any]) -> str:
    """The human-readable form of one answer."""
    lines = [f"== {answer['file']}"]
    if "error" in answer:
        return "\n".join([*lines, f"  error: {answer['error']}"])
    lines.append(f"  intent: {answer['primary_intent']}  (all: {', '.join(answer['intents'])})")
    lines.append(f"  rule:   {answer['rule']}: {answer.get('why', '')}")
    for mention in answer.get("mentions", []):
        lines.append(f"  {mention['intent']}: {mention['kind']} (\"{mention['sentence'][:80]}\")")
    if answer.get("faq"):
        lines.append(f"  faq:    {answer['faq_why']}")
    for name in answer.get("faq_unfilled", []):
        lines.append(f"  faq:    {name} matched, but its answer is not written yet (it never sends until it is)")
    if answer["explicit_request"]:
        lines.append(f"  explicit request: {answer['explicit_request']}")
    if answer["held_action"]:
        held = answer["held_action"]
        lines.append(f"  held: {held['action']} until {held['confirm_to']} confirms")
    if answer["skip_reason"]:
        lines.append(f"  no acknowledgment: {answer['skip_reason']}")
    reply = answer["reply"]
    if reply:
        lines.append(f"  reply to {reply['to']}: {reply['subject']}")
        lines.extend(f"    | {line}" for line in reply["text"].splitlines())
    return "\n".join(lines)
