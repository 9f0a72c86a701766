"""The owner answers supportd's own mail with a few plain words, and supportd does it, once.

"done" / "resolved" (close the ticket; the owner has answered the customer), "snooze 2 days" (the
answer is due later; the overdue alert comes again if that passes too), and on a change the shop
makes by hand (no hook, or a hook that failed) "done" or "do it": the customer is told it is done
(after a failed hook, "do it" runs the hook again instead).

A command counts only when both hold: the sender is the owner or staff (``shop.owner_address``,
``shop.staff_addresses``), AND the mail answers a Message-ID that supportd signed for mail it sent
only to the owner (an alert, an "action needed" mail, the confirmation of an earlier command).
A From header proves nothing; the signed ID proves the sender read the owner's mail, and it names
the ticket. supportd confirms every command back to its sender and says why when it refuses one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from supportd.act import pending, tickets
from supportd.base.clock import iso
from supportd.deliver.outbox import Answering, Letter, MailKey, Outgoing, compose
from supportd.deliver.replies import reply_subject
from supportd.intake.message import Inbound
from supportd.intake.msgids import read_message_id
from supportd.owner import alerts as owner
from supportd.service.context import Context
from supportd.state.ledger import Doc

DONE = re.compile(r"^(done|resolved|closed?|close it|fixed|sorted|solved|handled|answered|erledigt|"
                  r"did it|do it|all done|it'?s done|ok,? done)\b", re.IGNORECASE)
SNOOZE = re.compile(r"^snooze(?: it)?(?: for)?\s+(\d{1,3}|an?|one|two|three)\s*(hours?|h|days?|d|weeks?|w)\b",
                    re.IGNORECASE)
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}
UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7}
MAX_SNOOZE_HOURS = 24 * 90
HELP = ('Reply to an alert with one of: "done" (or "resolved": the ticket is closed), "snooze 2 days" '
        '(the answer is due later), "do it" (a change the shop makes by hand: the customer is told it '
        'is done).')


@dataclass(frozen=True)
class Command:
    verb: str  # done | do-it | snooze | unknown
    hours: float = 0.0
    words: str = ""


@dataclass
class CommandPlan:
    """What an owner's command does: the changes (applied with the message) and the answer to the owner."""

    command: Command
    ticket: int | None
    result: str
    changes: dict[str, Any] = field(default_factory=dict)
    mails: list[Outgoing] = field(default_factory=list)


def answered_owner_mail(ctx: Context, msg: Inbound) -> str | None:
    """The ref (a ticket number, '0' for none) of the owner-only mail this message answers, if any."""
    for message_id in msg.thread_ids:
        ours = read_message_id(ctx.secret, message_id)
        if ours is not None and ours[0] in tickets.OWNER_KINDS:
            return ours[1] if ours[0] == "owner" else "0"
    return None


def read_command(own_text: str) -> Command:
    """The command in the first line of the owner's own words (quoted alert and signature cut away)."""
    line = next((ln.strip() for ln in own_text.splitlines() if ln.strip()), "")
    words = line.strip(" \t.!-*>\"'")[:80]
    snooze = SNOOZE.match(words)
    if snooze:
        amount = NUMBER_WORDS.get(snooze.group(1).lower()) or int(snooze.group(1))
        return Command("snooze", min(MAX_SNOOZE_HOURS, amount * UNIT_HOURS[snooze.group(2)[0].lower()]), words)
    done = DONE.match(words)
    if done:
        return Command("do-it" if done.group(1).lower() == "do it" else "done", words=words)
    return Command("unknown", words=words)


def plan_command(ctx: Context, msg: Inbound, ref: str, key: str | None) -> CommandPlan:
    """What the owner's answer to an alert about ticket ``ref`` does (nothing is written here)."""
    command = read_command(msg.own_text)
    number = int(ref) if ref.isdigit() and int(ref) else None
    ticket = tickets.lookup(ctx, number) if number else None
    if command.verb == "unknown":
        plan = CommandPlan(command, number, f'Nothing was changed: supportd did not understand "{command.words}".')
    elif ticket is None:
        plan = CommandPlan(command, number, "Noted. This alert is not about a ticket, so there was nothing "
                                            "for supportd to change.")
    elif command.verb == "snooze":
        plan = _snooze(ctx, ticket, command)
    else:
        plan = _done(ctx, ticket, command)
    plan.mails.append(_answer(ctx, msg, plan, key))
    return plan


def _snooze(ctx: Context, ticket: Doc, command: Command) -> CommandPlan:
    number = ticket["number"]
    if ticket["state"] != tickets.OPEN:
        state = tickets.state_of(ticket, ctx.now())
        return CommandPlan(command, number, f"Ticket {number} is {state}: there is nothing to snooze.")
    due = ctx.now() + dt.timedelta(hours=command.hours)
    when = owner.human_moment(due, ctx.config.hours.timezone, ctx.now())
    return CommandPlan(command, number, f"Ticket {number} is due {when} now; you hear from supportd again "
                                        "if that passes unanswered.",
                       {"snooze": iso(due)})


def _done(ctx: Context, ticket: Doc, command: Command) -> CommandPlan:
    number = ticket["number"]
    held = _by_hand(ctx, number)
    if held is not None:
        what = pending.describe(held["action"], held["params"])
        if command.verb == "do-it" and held["state"] == pending.FAILED and held["action"] in ctx.config.hooks:
            return CommandPlan(command, number, f"supportd runs the change again now: {what}. You hear from it "
                                                "if it fails again.", {"retry": held["id"]})
        return CommandPlan(command, number, f"Told {held['address']} that it is done ({what}); ticket {number} "
                                            "is closed.", {"done_by_hand": held["id"]})
    if ticket["state"] != tickets.OPEN:
        state = tickets.state_of(ticket, ctx.now())
        return CommandPlan(command, number, f"Ticket {number} was already {state}; nothing changed.")
    return CommandPlan(command, number, f"Closed ticket {number} ({ticket['customer']}: {ticket['subject'][:60]}). "
                                        "The customer was not written to: supportd takes it that you answered.",
                       {"close": number})


def _by_hand(ctx: Context, number: int) -> Doc | None:
    """A confirmed change on this ticket that waits for the shop's hands (no hook, or the hook failed)."""
    for held in ctx.ledger.find("pending", ticket=number):
        waiting_for_hands = held["state"] == pending.DONE and held.get("by_hand") and not held.get("told_done")
        if waiting_for_hands or held["state"] == pending.FAILED:
            return held
    return None


def _answer(ctx: Context, msg: Inbound, plan: CommandPlan, key: str | None) -> Outgoing:
    """The confirmation (or the refusal) back to whoever gave the command."""
    assert msg.sender is not None
    values = {"result": plan.result, "words": plan.command.words, "ticket": plan.ticket,
              "understood": plan.command.verb != "unknown", "help": HELP}
    return compose(
        ctx, MailKey("owner", str(plan.ticket or 0), f"command:{msg.fingerprint}"), to=msg.sender,
        letter=Letter(reply_subject(msg.topic, None), "owner_command", values),
        answering=Answering.message(msg, key, mark_answered=False), ticket=plan.ticket,
        auto_submitted="auto-replied",
    )


def apply_command(ctx: Context, plan: CommandPlan) -> None:
    """Do what the command asked (durable with the message's decision, so it happens once)."""
    changes = plan.changes
    if "close" in changes:
        tickets.close(ctx, int(changes["close"]), "resolved", told=False, closed_by="owner's mail")
    if "snooze" in changes and plan.ticket is not None:
        ticket = tickets.lookup(ctx, plan.ticket)
        if ticket is not None:
            tickets.update(ctx, ticket, due=changes["snooze"], snoozed=int(ticket.get("snoozed", 0)) + 1)
    if "retry" in changes:
        ctx.ledger.patch("pending", "id", changes["retry"], state=pending.CONFIRMED, attempts=0, next_at=None)
    if "done_by_hand" in changes:
        pending.tell_done_by_hand(ctx, str(changes["done_by_hand"]))

