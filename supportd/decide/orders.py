"""Order status for delivery questions, from the shop's own export or a command.

Two sources, whichever the shop has: a CSV file it exports (columns ``order``, ``email``,
``status``, ``tracking``, ``carrier``, ``tracking_url``), or a command that prints one JSON object
for an order number or an address (``{"status": ..., "tracking": ...}``, or ``null``). A lookup never
raises: no source, no match, a broken file or a failing command all mean "a person will check".

An order is only ever told to the address it belongs to: anyone can type an order number. A CSV row
counts only when its ``email`` is the sender's (a row without one is never disclosed), and a
command's answer that names another ``email`` is dropped.

The same source says whose an order is (``owner_of``) before a cancellation is held for anyone, and
again before its hook runs: order numbers are sequential, so "cancel my order 77123" from a stranger
must not reach the confirmation step (see README, "What supportd trusts").
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # not at run time: a read-ahead process (which loads no config) imports this module
    from supportd.base.config import OrdersConfig

log = logging.getLogger(__name__)
FIELDS = ("status", "tracking", "carrier", "tracking_url")
Answer = TypeVar("Answer")  # what a source is asked for: an order's status, or whose it is


@dataclass(frozen=True)
class OrderStatus:
    order: str
    status: str
    tracking: str = ""
    carrier: str = ""
    tracking_url: str = ""

    def as_template_value(self) -> dict[str, str]:
        return {"order": self.order, "status": self.status, "tracking": self.tracking,
                "carrier": self.carrier, "tracking_url": self.tracking_url}


def lookup(config: OrdersConfig, order_number: str | None, address: str) -> OrderStatus | None:
    """The status of the customer's order: by number when given, else their latest by address."""
    return _ask_source(config, order_number, address, _from_csv, _from_command,
                       failed="order lookup failed (%s); a person will check instead")


def _ask_source(config: OrdersConfig, order_number: str | None, address: str,
                by_csv: Callable[[OrdersConfig, str | None, str], Answer],
                by_command: Callable[[OrdersConfig, str | None, str], Answer], *, failed: str) -> Answer | None:
    """Ask the configured order source (the CSV file, else the command); None when there is none or it
    failed (logged with ``failed``: a broken source never stops the message)."""
    try:
        if config.csv_file is not None:
            return by_csv(config, order_number, address)
        if config.command:
            return by_command(config, order_number, address)
    except (OSError, ValueError, csv.Error, subprocess.SubprocessError) as exc:
        log.warning(failed, type(exc).__name__)
    return None


@dataclass(frozen=True)
class Ownership:
    """Whose order it is, as the order source says: ``owner`` is '' when the source does not know."""

    order: str
    owner: str

    def belongs_to(self, address: str) -> bool:
        return bool(self.owner) and self.owner.lower() == address.lower()


def has_source(config: OrdersConfig) -> bool:
    return config.csv_file is not None or bool(config.command)


def owner_of(config: OrdersConfig, order_number: str | None, address: str) -> Ownership:
    """The order meant (by number; without one, the address's latest) and its owner's address.

    Never raises: a broken source knows nothing (owner ''), and nothing is held on it.
    """
    found = _ask_source(config, order_number, address, _owner_from_csv, _owner_from_command,
                        failed="order ownership lookup failed (%s); nothing is held")
    return found if found is not None else Ownership(order_number or "", "")


def _csv_rows(config: OrdersConfig) -> Iterator[dict[str, str]]:
    assert config.csv_file is not None
    with config.csv_file.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            yield {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}


def _owner_from_csv(config: OrdersConfig, order_number: str | None, address: str) -> Ownership:
    latest = Ownership("", "")
    for row in _csv_rows(config):
        order, email = row.get("order", "").lstrip("#"), row.get("email", "")
        if order_number and order.lower() == order_number.lower():
            return Ownership(order, email)
        if not order_number and email and email.lower() == address.lower():
            latest = Ownership(order, email)  # the last row is the latest order
    return latest if not order_number else Ownership(order_number, "")


def _owner_from_command(config: OrdersConfig, order_number: str | None, address: str) -> Ownership:
    answer = _ask_command(config, order_number, address)
    if not isinstance(answer, dict):
        return Ownership(order_number or "", "")
    order = str(answer.get("order") or order_number or "")
    return Ownership(order, str(answer.get("email") or ""))  # an answer without "email" names no owner


def _ask_command(config: OrdersConfig, order_number: str | None, address: str) -> object:
    query = {"order": order_number, "email": address}
    result = subprocess.run(
        list(config.command), input=json.dumps(query), capture_output=True, text=True,
        timeout=config.timeout_seconds, check=False,
    )
    if result.returncode != 0:
        raise OSError(f"order command exited with {result.returncode}")
    answer: object = json.loads(result.stdout or "null")
    return answer


def _from_csv(config: OrdersConfig, order_number: str | None, address: str) -> OrderStatus | None:
    found = None
    for row in _csv_rows(config):
        same_order = order_number and row.get("order", "").lstrip("#").lower() == order_number.lower()
        same_customer = bool(row.get("email")) and row["email"].lower() == address.lower()
        if same_order and same_customer:
            return _status(row.get("order", ""), row)
        if not order_number and same_customer:
            found = _status(row.get("order", ""), row)  # the last row is the latest order
    return found


def _from_command(config: OrdersConfig, order_number: str | None, address: str) -> OrderStatus | None:
    answer = _ask_command(config, order_number, address)
    if not isinstance(answer, dict) or not answer.get("status"):
        return None
    if str(answer.get("email") or address).lower() != address.lower():
        log.warning("order command answered with another customer's order; not disclosed")
        return None
    return _status(str(answer.get("order") or order_number or ""), {k: str(v) for k, v in answer.items()})


def _status(order: str, row: dict[str, str]) -> OrderStatus | None:
    if not row.get("status"):
        return None
    return OrderStatus(order=order, **{f: row.get(f, "") for f in FIELDS})
