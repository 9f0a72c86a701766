"""Built-in actions are registered classes: every name a rule file can use resolves to one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from supportd.base.errors import InvalidFiles
from supportd.decide import registry
from supportd.decide.rules import load_rules
from supportd.deliver.replies import Replies

from conftest import REPO

GIFT = "intent: gift\npriority: 60\nreply: other\nrules:\n  - name: gift-wrap\n    message: [gift wrap]\n"


def named_actions(node: Any, key: str) -> Iterator[str]:
    """Every value under ``key`` anywhere in a YAML document (a word or a list of words)."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                yield from ([value] if isinstance(value, str) else value)
            else:
                yield from named_actions(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from named_actions(item, key)


def shipped(key: str) -> set[str]:
    return {name for path in sorted((REPO / "rules").glob("*.yaml"))
            for name in named_actions(yaml.safe_load(path.read_text(encoding="utf-8")), key)}


def rules_with(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(REPO / "rules", folder)
    (folder / "50-gift.yaml").write_text(text, encoding="utf-8")
    return folder


def test_every_action_the_shipped_rules_name_resolves_to_a_registered_class() -> None:
    """The default rules' actions and confirm_actions are all registered, each with its own class."""
    actions, confirms = shipped("actions"), shipped("confirm_action")
    assert actions and confirms
    for name in actions:
        assert name == type(registry.rule_action(name)).NAME
    for name in confirms:
        action = registry.confirm_action(name)
        assert not isinstance(action, registry.HookAction) and name == action.NAME


def test_the_rule_loader_accepts_exactly_the_registered_names(tmp_path: Path) -> None:
    """A rule may name every registered action; the irreversible ones only as confirm_action."""
    replies = Replies(REPO / "replies").names()
    every = f"{GIFT}    actions: [{', '.join(registry.rule_actions())}]\n"
    assert load_rules(rules_with(tmp_path / "a", every), replies).rules
    for name in registry.confirm_actions():
        with pytest.raises(InvalidFiles) as caught:
            load_rules(rules_with(tmp_path / name, f"{GIFT}    actions: [{name}]\n"), replies)
        assert [str(p) for p in caught.value.problems] == [
            f"rules/50-gift.yaml:7: unknown action '{name}'; known: {', '.join(registry.rule_actions())} "
            "(irreversible actions go in 'confirm_action')"]


def test_an_unknown_confirm_action_is_reported_at_its_line(tmp_path: Path) -> None:
    """confirm_action: refund_now (no such action, no hook of that name) is rules/FILE.yaml:LINE: what to do."""
    with pytest.raises(InvalidFiles) as caught:
        load_rules(rules_with(tmp_path, f"{GIFT}    confirm_action: refund_now\n"), Replies(REPO / "replies").names())
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("rules/50-gift.yaml:7: unknown confirm_action 'refund_now'; known: cancel_order, "
                              "cancel_subscription, unsubscribe")


def test_the_readme_describes_every_rule_action_as_its_class_does() -> None:
    """The README's list of actions is the registry's: each name with its class's description."""
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    for name in registry.rule_actions():
        assert f"`{name}` ({registry.rule_action(name).SUMMARY})" in readme, registry.rule_action(name).describe()


def test_held_changes_are_described_to_the_customer_by_their_class() -> None:
    """'cancel order 77120' before, 'cancelled order 77120' after; a hook of the owner's own by its name."""
    cancel = registry.confirm_action("cancel_order")
    assert cancel.describe({"order_number": "77120"}) == "cancel order 77120"
    assert cancel.describe({}, done=True) == "cancelled your order"
    assert registry.confirm_action("refund_now").describe({}) == "carry out 'refund now' for you"
