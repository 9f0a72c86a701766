"""The owner's rules and replies, loaded and checked together (for the daemon, ``check`` and the offline ``try``).

Its own module so that ``supportd try`` reads them without importing the daemon (IMAP, SMTP, the
scheduler).
"""

from __future__ import annotations

from supportd.base.config import Config
from supportd.base.errors import InvalidFiles
from supportd.decide.rules import RuleSet, load_rules, rule_file_stamps
from supportd.deliver.replies import Replies, reply_file_stamps


def load_rules_and_replies(config: Config) -> tuple[RuleSet, Replies]:
    """The owner's rules and replies, checked together; raises ``InvalidFiles``."""
    replies = Replies(config.replies_dir)
    rules = load_rules(config.rules_dir, replies.names(), extra_confirm_actions=config.hooks)
    intent_replies: dict[str, set[str]] = {}
    for rule in rules.rules:
        if rule.reply:
            intent_replies.setdefault(rule.intent, set()).add(rule.reply)
    problems = [p for p in replies.check(intent_replies) if not p.warning]
    if problems:
        raise InvalidFiles(problems)
    # the FAQ's answers are our words too: pasted back in a reply, they are not the customer's
    replies.more_of_our_text = [entry.answer for entry in rules.faq.entries if entry.answer]
    return rules, replies


def owner_file_stamps(config: Config) -> tuple[dict[str, float], dict[str, float]]:
    """When each rule file and reply template was last changed: the daemon reloads (checked) on an edit."""
    return rule_file_stamps(config.rules_dir), reply_file_stamps(config.replies_dir)
