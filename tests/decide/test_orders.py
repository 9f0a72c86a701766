"""Delivery questions answered with the order's status and tracking, told only to the order's owner."""

from __future__ import annotations

import sys
from email.message import EmailMessage
from pathlib import Path

from supportd.base.config import OrdersConfig
from supportd.decide.orders import lookup

from conftest import OWNER, World, mail

ORDERS_CSV = """order,email,status,tracking,carrier,tracking_url
77118,ada@example.org,delivered on 2 November,00340434160000000001,DHL,
77120,Ada@Example.org,shipped on Friday,00340434161234567890,DHL,https://track.example/00340434161234567890
77121,bob@example.org,being packed,,,
77122,,shipped,00340434169999999999,DHL,
"""
# The shop's order command: reads {"order", "email"} and prints the order as JSON (or null).
ORDER_COMMAND = """import json, sys
query = json.load(sys.stdin)
orders = {"88230": {"order": "88230", "email": "ada@example.org", "status": "out for delivery",
                    "tracking": "1Z999AA10123456784", "carrier": "UPS"},
          "88231": {"order": "88231", "email": "bob@example.org", "status": "shipped", "tracking": "1Z0000"}}
found = orders.get(query["order"] or "")
if found is None and query["order"] is None:
    found = next((o for o in orders.values() if o["email"] == query["email"]), None)
print(json.dumps(found))
"""


def csv_source(tmp: Path, text: str = ORDERS_CSV) -> OrdersConfig:
    path = tmp / "orders.csv"
    path.write_text(text, encoding="utf-8")
    return OrdersConfig(csv_file=path)


def command_source(tmp: Path, script: str = ORDER_COMMAND) -> OrdersConfig:
    path = tmp / "orders.py"
    path.write_text(script, encoding="utf-8")
    return OrdersConfig(command=(sys.executable, str(path)), timeout_seconds=10)


def with_order_export(world: World) -> None:
    """The shop's order export (ORDERS_CSV) as the world's order source."""
    (world.root / "orders.csv").write_text(ORDERS_CSV)
    world.write_config(orders={"csv": "orders.csv"})


def answer_to(world: World, raw: bytes) -> str:
    """The text of the one reply the customer gets to ``raw``."""
    world.deliver(raw)
    world.once()
    [reply] = world.sent_to("ada@example.org")
    return reply_text(reply)


def reply_text(reply: EmailMessage) -> str:
    return str(reply.get_content())


# ---------------------------------------------------------------- the lookup


def test_csv_finds_the_customers_order_by_number(tmp_path: Path) -> None:
    """Order number and sender match a row: its status and tracking come back (addresses in any case)."""
    found = lookup(csv_source(tmp_path), "77120", "ada@example.org")
    assert found is not None
    assert (found.status, found.tracking, found.carrier) == ("shipped on Friday", "00340434161234567890", "DHL")


def test_csv_never_tells_another_customers_order(tmp_path: Path) -> None:
    """Bob typing Ada's order number learns nothing."""
    assert lookup(csv_source(tmp_path), "77120", "bob@example.org") is None


def test_csv_row_without_an_address_is_never_told(tmp_path: Path) -> None:
    """A row the shop exported without an email cannot be matched to anyone, so it is not told."""
    assert lookup(csv_source(tmp_path), "77122", "eve@example.org") is None


def test_csv_without_a_number_gives_the_customers_latest_order(tmp_path: Path) -> None:
    """'Where is my parcel?' without a number: the sender's last order in the export."""
    found = lookup(csv_source(tmp_path), None, "ada@example.org")
    assert found is not None and found.order == "77120"


def test_csv_order_numbers_match_with_a_hash(tmp_path: Path) -> None:
    """An export that writes '#77121' still matches the customer's '77121'."""
    found = lookup(csv_source(tmp_path, "order,email,status\n#77121,bob@example.org,being packed\n"),
                   "77121", "bob@example.org")
    assert found is not None and found.status == "being packed"


def test_unknown_order_means_a_person_will_check(tmp_path: Path) -> None:
    """No row: no status (the reply then promises a person's answer)."""
    assert lookup(csv_source(tmp_path), "99999", "ada@example.org") is None


def test_missing_or_broken_export_never_fails_the_reply(tmp_path: Path) -> None:
    """A missing file or undecodable bytes: no status, and no exception."""
    assert lookup(OrdersConfig(csv_file=tmp_path / "absent.csv"), "77120", "ada@example.org") is None
    (tmp_path / "bad.csv").write_bytes(b"order,email,status\n\xff\xfe\x00broken")
    assert lookup(OrdersConfig(csv_file=tmp_path / "bad.csv"), "77120", "ada@example.org") is None


def test_command_answers_for_the_customers_order(tmp_path: Path) -> None:
    """The shop's command gets the number and address as JSON and its answer is used."""
    found = lookup(command_source(tmp_path), "88230", "ada@example.org")
    assert found is not None
    assert (found.status, found.tracking, found.carrier) == ("out for delivery", "1Z999AA10123456784", "UPS")


def test_command_answer_for_another_address_is_not_told(tmp_path: Path) -> None:
    """A command that returns Bob's order to Ada: supportd drops it."""
    assert lookup(command_source(tmp_path), "88231", "ada@example.org") is None


def test_failing_or_hanging_command_never_fails_the_reply(tmp_path: Path) -> None:
    """Exit 1 or no answer in time: no status, and no exception."""
    assert lookup(command_source(tmp_path, "import sys; sys.exit(1)"), "1", "ada@example.org") is None
    slow = command_source(tmp_path, "import time; time.sleep(30)")
    slow = OrdersConfig(command=slow.command, timeout_seconds=0.5)
    assert lookup(slow, "1", "ada@example.org") is None


# ---------------------------------------------------------------- end to end


def test_delivery_question_gets_status_and_tracking_from_the_csv(world: World) -> None:
    """'Where is order 77120?' is answered at once with its status, carrier, number and link."""
    with_order_export(world)
    world.deliver(mail("Hello, where is my order 77120? It has not arrived yet."))
    world.once()
    [reply] = world.sent_to("ada@example.org")
    text = reply_text(reply)
    assert "Status of order 77120: shipped on Friday" in text
    assert "Tracking number (DHL): 00340434161234567890" in text
    assert "https://track.example/00340434161234567890" in text


def test_delivery_question_gets_status_from_the_command(world: World) -> None:
    """The same with an order command instead of an export."""
    (world.root / "orders.py").write_text(ORDER_COMMAND)
    world.write_config(orders={"command": [sys.executable, str(world.root / "orders.py")]})
    world.deliver(mail("Hi, where is my order 88230?"))
    world.once()
    text = reply_text(world.sent_to("ada@example.org")[0])
    assert "Status of order 88230: out for delivery" in text
    assert "Tracking number (UPS): 1Z999AA10123456784" in text


def test_another_customers_order_number_is_not_disclosed(world: World) -> None:
    """Bob asks about Ada's order: no status or tracking; a person will check, with the ETA."""
    with_order_export(world)
    world.deliver(mail("Hello, where is my order 77120?", sender="Bob <bob@example.org>"))
    world.once()
    text = reply_text(world.sent_to("bob@example.org")[0])
    assert "00340434161234567890" not in text and "shipped on Friday" not in text
    assert "A person will check where it is and write back by" in text


def test_command_order_of_another_customer_is_not_disclosed(world: World) -> None:
    """A command that answers for any number still never reaches the wrong customer."""
    (world.root / "orders.py").write_text(ORDER_COMMAND)
    world.write_config(orders={"command": [sys.executable, str(world.root / "orders.py")]})
    world.deliver(mail("Where is order 88231? Thanks!"))
    world.once()
    text = reply_text(world.sent_to("ada@example.org")[0])
    assert "1Z0000" not in text and "A person will check" in text


def test_found_order_closes_the_ticket_unknown_order_keeps_it_open(world: World) -> None:
    """A question answered from the export needs no follow-up; an unknown order waits for a person."""
    with_order_export(world)
    world.deliver(mail("Hello, where is my order 77120?"))
    world.deliver(mail("Hello, where is my order 55555?", subject="Another order"))
    report = world.once()
    answered, unknown = report.plans
    tickets = world.tickets()
    assert tickets[answered["ticket"]]["state"] == "closed"
    assert tickets[unknown["ticket"]]["state"] == "open"
    assert tickets[unknown["ticket"]]["due"] is not None


def test_german_question_gets_status_and_tracking_in_german(world: World) -> None:
    """'Wo bleibt meine Bestellung 77120?' from the order's owner: status and tracking, in German."""
    with_order_export(world)
    text = answer_to(world, mail("Hallo, wo bleibt meine Bestellung 77120?", subject="Bestellung 77120"))
    assert "Status der Bestellung 77120: shipped on Friday" in text
    assert "Sendungsnummer (DHL): 00340434161234567890" in text


def test_lost_parcel_stays_open_for_a_person_and_alerts_the_owner(world: World) -> None:
    """'Tracking says delivered, no parcel here': the ticket stays open and the owner hears at once."""
    with_order_export(world)
    world.deliver(mail("Hello, the tracking says order 77118 was delivered but there is no parcel here.",
                       subject="Order 77118"))
    report = world.once()
    [plan] = report.plans
    ticket = world.tickets()[plan["ticket"]]
    assert plan["primary_intent"] == "lost_parcel"
    assert ticket["state"] == "open" and ticket["due"] is not None
    [reply] = world.sent_to("ada@example.org")
    assert "delivered on 2 November" in reply_text(reply) and "A person is looking into it" in reply_text(reply)
    [alert] = world.sent_to(OWNER)
    assert "77118" in reply_text(alert)


def test_lost_parcel_not_yet_delivered_by_the_carrier_alerts_nobody(world: World) -> None:
    """When the carrier does not say delivered, a person follows up, without an alert."""
    with_order_export(world)
    world.deliver(mail("My tracking says delivered, but nothing arrived. Order 77120.", subject="Order"))
    report = world.once()
    assert world.tickets()[report.plans[0]["ticket"]]["state"] == "open"
    assert world.sent_to(OWNER) == []
