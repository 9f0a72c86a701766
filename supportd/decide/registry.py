"""Built-in actions: each a class with a ``NAME``, ``describe()`` and ``perform()``, registered by name in
``REGISTRY`` (as imapautofiler registers its actions). The rule loader accepts the names registered
here; the planner (``supportd.decide.actions``) and ``supportd.act.pending`` perform them; their words
for the customer and the owner come from the classes.

Two kinds, named in two places of a rule:

* ``RuleAction`` (``actions: [open_ticket, order_status]``): supportd's own part in answering a new
  request. ``perform`` adds it to the ``Request`` being planned and writes nothing (the plan is
  applied later in one go, and ``supportd try`` shows it without keeping anything).
* ``ConfirmAction`` (``confirm_action: cancel_order``): an irreversible change, held until the
  customer confirms in their own words. ``perform`` carries it out once confirmed: the owner's hook
  (``actions.NAME`` in the config), or without one the owner is asked by mail to do it by hand. A
  hook under a name of the owner's own is a confirm action too (see ``confirm_action``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from supportd.decide import orders

if TYPE_CHECKING:  # the rule loader imports this module: it must not pull in the daemon's context
    from supportd.base.config import HookConfig
    from supportd.service.context import Context
    from supportd.state.ledger import Doc

REGISTRY: dict[str, BuiltinAction] = {}
A = TypeVar("A", bound="type[BuiltinAction]")


def register(cls: A) -> A:
    """Class decorator: the action, by its NAME, in ``REGISTRY`` (in the order they are declared)."""
    REGISTRY[cls.NAME] = cls()
    return cls


class BuiltinAction:
    NAME: str
    SUMMARY: str  # what it does, in a few words for the owner

    def describe(self) -> str:
        """'order_status: look the order up; ...' (the README's list of actions says the same)."""
        return f"{self.NAME}: {self.SUMMARY}"


# ---------------------------------------------------------------- actions: in a rule


@dataclass
class Request:
    """A new request as its rule actions leave it (read by ``supportd.decide.actions._plan_new_request``)."""

    order_number: str | None  # the number the customer gave, if any
    reply_to: str  # the address the reply goes to: an order is only ever told to its own address
    values: dict[str, Any] = field(default_factory=dict)  # the reply's template values, added to
    order: orders.OrderStatus | None = None
    reward_code: str | None = None
    opens_ticket: bool = False
    checks_delivery: bool = False


class RuleAction(BuiltinAction):
    # Honoured when any matching rule names it, not only the rule that decides the reply.
    FROM_EVERY_RULE = False

    def perform(self, ctx: Context, request: Request) -> None:
        """Its part in answering a new request; writes nothing."""


@register
class OpenTicket(RuleAction):
    NAME = "open_ticket"
    SUMMARY = "a person follows up; without it the ticket is created closed"

    def perform(self, ctx: Context, request: Request) -> None:
        request.opens_ticket = True


@register
class OrderStatus(RuleAction):
    NAME = "order_status"
    SUMMARY = "look the order up; a found status answers the question"

    def perform(self, ctx: Context, request: Request) -> None:
        request.order = orders.lookup(ctx.config.orders, request.order_number, request.reply_to)
        request.values["order"] = request.order.as_template_value() if request.order else None


@register
class Escalate(RuleAction):
    NAME = "escalate"
    SUMMARY = "alert the owner now"
    FROM_EVERY_RULE = True
    # Planned with the alerts (``_plan_escalations``), which also run for follow-ups: nothing to add here.


@register
class RewardCode(RuleAction):
    NAME = "reward_code"
    SUMMARY = "a thank-you code from the pool"

    def perform(self, ctx: Context, request: Request) -> None:
        request.reward_code = next_reward_code(ctx)
        request.values["reward_code"] = request.reward_code


@register
class NoReply(RuleAction):
    NAME = "no_reply"
    SUMMARY = "no acknowledgment"
    FROM_EVERY_RULE = True
    # Planned with the acknowledgment (``_plan_acknowledgment``): nothing to add here.


@register
class CheckDelivered(RuleAction):
    NAME = "check_delivered"
    SUMMARY = ("for a lost parcel: the found status never closes the ticket, and the owner is alerted at "
               "once when the carrier says delivered")

    def perform(self, ctx: Context, request: Request) -> None:
        request.checks_delivery = True


def next_reward_code(ctx: Context) -> str | None:
    """The first code in ``paths.reward_codes`` not handed out yet (used up only when the reply goes out)."""
    path = ctx.config.reward_codes_file
    if path is None or not path.exists():
        return None
    used = set(ctx.ledger.meta("reward_codes_used", []))
    for line in path.read_text(encoding="utf-8").splitlines():
        code = line.strip()
        if code and not code.startswith("#") and code not in used:
            return code
    return None


def rule_actions() -> list[str]:
    """The names a rule's ``actions:`` may use."""
    return [name for name, action in REGISTRY.items() if isinstance(action, RuleAction)]


def rule_action(name: str) -> RuleAction:
    action = REGISTRY[name]
    assert isinstance(action, RuleAction), name  # the rule loader accepts only these
    return action


def perform_rule_actions(ctx: Context, names: Iterable[str], request: Request) -> Request:
    """Every action a rule named, in its order, performed on ``request``."""
    for name in names:
        rule_action(name).perform(ctx, request)
    return request


def from_every_rule(name: str) -> bool:
    return rule_action(name).FROM_EVERY_RULE


# ---------------------------------------------------------------- confirm_action: held until confirmed


@dataclass(frozen=True)
class HookOutcome:
    ok: bool
    detail: str
    by_hand: bool = False  # no hook: the owner was asked to make the change


class ConfirmAction(BuiltinAction):
    # What it does, before and after, in words for the customer; {order_number} and {name} are filled in.
    FORMS = ("carry out '{name}' for you", "carried out '{name}' for you")
    DONE_FOR_OWNER = ""  # how the owner's digest counts it once done ("order cancelled"); "" for its name
    UNDO = ""  # how the customer undoes it, when the hook's config says nothing
    # True: always about an order; False: about the sender's own address, theirs by definition;
    # None: about an order when the customer gave a number.
    ON_ORDER: bool | None = None

    def describe(self, params: dict[str, Any] | None = None, done: bool = False) -> str:
        """'cancel order 77120', or with ``done`` 'cancelled order 77120'; without params, for the owner."""
        if params is None:
            return super().describe()
        text = self.FORMS[1 if done else 0]
        if "{order_number}" in text and not params.get("order_number"):
            text = text.replace("order {order_number}", "your order")
        return text.format(order_number=params.get("order_number", ""), name=self.NAME.replace("_", " "))

    def done_for_owner(self) -> str:
        return self.DONE_FOR_OWNER or self.NAME

    def undo(self, ctx: Context) -> str:
        hook = ctx.config.hooks.get(self.NAME)
        return hook.undo if hook and hook.undo else self.UNDO

    def perform(self, ctx: Context, held: Doc) -> HookOutcome:
        """Carry out the confirmed change: the owner's hook, or (without one) hand it to the owner."""
        hook = ctx.config.hooks.get(self.NAME)
        if hook is None:
            return HookOutcome(True, "sent to the owner to do by hand", by_hand=True)
        return run_hook(hook, held)


@register
class CancelOrder(ConfirmAction):
    NAME = "cancel_order"
    SUMMARY = "cancel the customer's order"
    FORMS = ("cancel order {order_number}", "cancelled order {order_number}")
    DONE_FOR_OWNER = "order cancelled"
    ON_ORDER = True


@register
class CancelSubscription(ConfirmAction):
    NAME = "cancel_subscription"
    SUMMARY = "end the customer's subscription"
    FORMS = ("cancel your subscription", "cancelled your subscription")
    DONE_FOR_OWNER = "subscription cancelled"
    UNDO = "You are welcome back any time: write to us and we will set it up again."
    ON_ORDER = False


@register
class Unsubscribe(ConfirmAction):
    NAME = "unsubscribe"
    SUMMARY = "stop sending the customer the shop's emails"
    FORMS = ("stop sending you our emails", "stopped sending you our emails")
    DONE_FOR_OWNER = "unsubscribed"
    UNDO = "If you ever want our emails again, just write to us and we will add you back."
    ON_ORDER = False


class HookAction(ConfirmAction):
    """A confirm action of the owner's own: a hook under its name in the config (``actions.NAME``)."""

    SUMMARY = "the owner's hook of that name (actions.NAME in the config)"

    def __init__(self, name: str) -> None:
        self.NAME = name


def confirm_actions() -> list[str]:
    """The built-in names a rule's ``confirm_action`` may use (a configured hook's name may be used too)."""
    return [name for name, action in REGISTRY.items() if isinstance(action, ConfirmAction)]


def confirm_action(name: str) -> ConfirmAction:
    """The built-in action of that name, or the owner's hook of that name."""
    action = REGISTRY.get(name)
    return action if isinstance(action, ConfirmAction) else HookAction(name)


def hook_payload(pending: Doc) -> dict[str, Any]:
    return {
        "id": pending["id"],
        "idempotency_key": pending.get("idempotency_key") or pending["id"],
        "action": pending["action"],
        "params": pending["params"],
        "customer": pending["address"],
        "ticket": pending["ticket"],
        "retry": int(pending.get("attempts", 0)) > 1,
    }


def run_hook(hook: HookConfig, pending: Doc) -> HookOutcome:
    """Run the owner's command with the action as JSON on stdin; exit 0 means done."""
    env = {**os.environ, "SUPPORTD_ACTION_ID": pending["id"], "SUPPORTD_ACTION": pending["action"]}
    try:
        result = subprocess.run(
            list(hook.command), input=json.dumps(hook_payload(pending)), capture_output=True,
            text=True, timeout=hook.timeout_seconds, env=env, check=False,
        )
    except subprocess.TimeoutExpired:
        return HookOutcome(False, f"no answer within {hook.timeout_seconds:g} s")
    except OSError as exc:
        return HookOutcome(False, f"could not start {hook.command[0]}: {exc.strerror}")
    if result.returncode == 0:
        return HookOutcome(True, result.stdout.strip()[:500])
    return HookOutcome(False, f"exit {result.returncode}: {result.stderr.strip()[:300]}")

