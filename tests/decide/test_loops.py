"""No mail loop can start: two shops running supportd, or supportd and a careless out-of-office robot.

One Dovecot holds every mailbox; the SMTP sink delivers what it receives into the recipient's INBOX
(``deliver_to_dovecot``), so a reply one side sends is what the other side reads on its next pass.
Each test runs the parties in turn for a bounded number of rounds and counts the mail each way.
"""

from __future__ import annotations

import email.policy
import email.utils
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from supportd.base.clock import FakeClock
from supportd_testing.localmail import Dovecot, MailUser, SmtpSink, deliver_to_dovecot, dovecot_available

from conftest import World, mail
from planning import TUESDAY_MORNING

SHOP_A = "shop-a@a.example"
SHOP_B = "shop-b@b.example"
AWAY = "away@customer.example"
MAX_ROUNDS = 12


@dataclass
class Network:
    dovecot: Dovecot
    sink: SmtpSink
    root: Path
    worlds: list[World] = field(default_factory=list)

    def shop(self, address: str, **sections: dict[str, object]) -> World:
        """A supportd instance with its own config and state, for the mailbox ``address``."""
        folder = self.root / address.split("@")[0]
        folder.mkdir()
        world = World(root=folder, dovecot=self.dovecot, sink=self.sink, user=self.dovecot.user(address))
        world.write_config(shop={"name": address, "support_address": address,
                                 "owner_address": f"owner@{address.split('@')[1]}"}, **sections)
        self.worlds.append(world)
        return world

    def count(self, sender: str, recipient: str) -> int:
        """Mails sent from ``sender``'s address to ``recipient`` over SMTP."""
        return sum(1 for m in self.sink.messages
                   if recipient in m.rcpt_tos and sender in str(m.message()["From"]))


@pytest.fixture
def network(short_tmp: Path) -> Iterator[Network]:
    if not dovecot_available():
        pytest.skip("Dovecot is not installed (the README's test command installs it)")
    users = [MailUser(SHOP_A, "a-secret"), MailUser(SHOP_B, "b-secret"), MailUser(AWAY, "away-secret")]
    dovecot = Dovecot(short_tmp / "dovecot", users=users)
    sink = SmtpSink(deliver=deliver_to_dovecot(dovecot))
    dovecot.start()
    sink.start()
    net = Network(dovecot=dovecot, sink=sink, root=short_tmp)
    try:
        yield net
    finally:
        for world in net.worlds:
            for daemon in world.daemons:
                daemon.close()
        sink.stop()
        dovecot.stop()


class Responder:
    """A naive out-of-office robot: answers every mail in its INBOX, once, with no robot headers."""

    def __init__(self, net: Network, address: str, subject: Callable[[EmailMessage], str],
                 headers: dict[str, str] | None = None) -> None:
        self.net = net
        self.address = address
        self.subject = subject
        self.headers = headers or {}
        self.answered: set[int] = set()

    def run_once(self) -> int:
        client = self.net.dovecot.connect(self.address)
        try:
            client.select_folder("INBOX")
            new = [uid for uid in client.search("ALL") if uid not in self.answered]
            fetched = client.fetch(new, ["BODY.PEEK[]"]) if new else {}
        finally:
            client.logout()
        for uid in new:
            self.answered.add(uid)
            self._answer(BytesParser(policy=email.policy.default).parsebytes(fetched[uid][b"BODY[]"]))
        return len(new)

    def _answer(self, incoming: EmailMessage) -> None:
        reply = EmailMessage()
        reply["From"] = f"Away <{self.address}>"
        reply["To"] = str(incoming["From"])
        reply["Subject"] = self.subject(incoming)
        reply["Date"] = email.utils.formatdate()
        reply["Message-ID"] = email.utils.make_msgid(domain="customer.example")
        for name, value in self.headers.items():
            reply[name] = value
        reply.set_content("I am away until Monday and will read your mail then.")
        with smtplib.SMTP("127.0.0.1", self.net.sink.port, timeout=10) as smtp:
            smtp.send_message(reply)


def run_rounds(*parties: Callable[[], int]) -> int:
    """Run each party in turn until a whole round sends nothing; returns the rounds that sent mail."""
    for round_number in range(MAX_ROUNDS):
        if sum(party() for party in parties) == 0:
            return round_number
    raise AssertionError(f"still mailing each other after {MAX_ROUNDS} rounds")


def test_two_shops_running_supportd_exchange_one_mail_each_way(network: Network) -> None:
    """Each shop's owner writes to the other; each supportd answers once, and the answers get nothing."""
    clock = FakeClock(TUESDAY_MORNING)
    shop_a, shop_b = network.shop(SHOP_A), network.shop(SHOP_B)
    shop_a.deliver(mail("Hello, do you sell wholesale?", sender=f"Bea <{SHOP_B}>", to=SHOP_A,
                        subject="Wholesale"))
    shop_b.deliver(mail("Hello, can we swap links?", sender=f"Abe <{SHOP_A}>", to=SHOP_B, subject="Links"))
    run_rounds(lambda: shop_a.once(clock).sent, lambda: shop_b.once(clock).sent)
    assert network.count(SHOP_A, SHOP_B) == 1
    assert network.count(SHOP_B, SHOP_A) == 1


def test_out_of_office_robot_that_keeps_the_subject_gets_one_mail(network: Network) -> None:
    """A robot answering with 'Re: <our subject [#N]>' and no robot headers joins the ticket: one each way."""
    clock = FakeClock(TUESDAY_MORNING)
    shop = network.shop(SHOP_A)
    robot = Responder(network, AWAY, lambda incoming: f"Re: {incoming['Subject']}")
    shop.deliver(mail("Hello, where is my order 77120?", sender=f"Ann <{AWAY}>", to=SHOP_A))
    run_rounds(lambda: shop.once(clock).sent, robot.run_once)
    assert network.count(SHOP_A, AWAY) == 1
    assert network.count(AWAY, SHOP_A) == 1


def test_out_of_office_robot_with_its_own_subject_is_stopped_by_the_cap(network: Network) -> None:
    """A robot that drops every trace of the thread gets at most the daily cap and one notice, then silence."""
    clock = FakeClock(TUESDAY_MORNING)
    shop = network.shop(SHOP_A, limits={"acks_per_sender_per_day": 3})
    robot = Responder(network, AWAY, lambda incoming: "Thank you for your email")
    shop.deliver(mail("Hello, where is my order 77120?", sender=f"Ann <{AWAY}>", to=SHOP_A))
    run_rounds(lambda: shop.once(clock).sent, robot.run_once)
    assert network.count(SHOP_A, AWAY) == 3 + 1
    assert network.count(AWAY, SHOP_A) == 3 + 1


def test_out_of_office_robot_with_robot_headers_gets_nothing_back(network: Network) -> None:
    """A well-behaved robot (Auto-Submitted) answering our acknowledgment ends it at once."""
    clock = FakeClock(TUESDAY_MORNING)
    shop = network.shop(SHOP_A)
    robot = Responder(network, AWAY, lambda incoming: "Away until Monday",
                      headers={"Auto-Submitted": "auto-replied"})
    shop.deliver(mail("Hello, where is my order 77120?", sender=f"Ann <{AWAY}>", to=SHOP_A))
    run_rounds(lambda: shop.once(clock).sent, robot.run_once)
    assert network.count(SHOP_A, AWAY) == 1
    assert network.count(AWAY, SHOP_A) == 1
