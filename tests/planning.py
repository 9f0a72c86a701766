"""Deciding about messages without servers: the real guard, rules and templates, an in-memory ledger.

For tests that judge many messages (the whole corpus) or pure decisions; everything a customer
receives is also tested end to end through the ``world`` fixture.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import cache
from typing import Any

from supportd.base.clock import Clock, FakeClock
from supportd.base.config import Config, offline_config
from supportd.decide.actions import Plan, plan_message
from supportd.decide.rules import RuleSet
from supportd.deliver.replies import Replies
from supportd.intake.message import Inbound
from supportd.service.context import Context
from supportd.service.ownerfiles import load_rules_and_replies
from supportd.state.ledger import Ledger

# A Tuesday morning in business hours (Europe/Berlin is UTC+1 in winter).
TUESDAY_MORNING = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)


@cache
def default_rules_and_replies() -> tuple[RuleSet, Replies]:
    return load_rules_and_replies(offline_config())


def offline_context(support_address: str = "support@shop.example", clock: Clock | None = None,
                    **config_changes: Any) -> Context:
    """A Context like ``supportd try --address`` builds: default rules and replies, empty ledger."""
    base = offline_config(support_address)
    config: Config = dataclasses.replace(base, **config_changes) if config_changes else base
    rules, replies = default_rules_and_replies()
    clock = clock or FakeClock(TUESDAY_MORNING)
    return Context(config=config, rules=rules, replies=replies, ledger=Ledger.in_memory(clock), clock=clock,
                   secret=b"test-secret-" * 3)


def own_recipient(msg: Inbound) -> str:
    """The address a message was delivered to (Delivered-To, else To): what ``--address`` would be."""
    found = [*msg.delivered_to, *(a.key for a in msg.to)]
    return found[0] if found else "support@shop.example"


def plan_for(ctx: Context, msg: Inbound) -> Plan:
    return plan_message(ctx, msg, key=None)
