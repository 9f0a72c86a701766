"""A backlog read ahead in a second process: the same decisions and replies, and nothing lost when it fails."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import pickle
import re
import time
from email.message import EmailMessage

from supportd.base.clock import FakeClock
from supportd.service.readahead import _ReaderFile
from supportd_testing.localmail import MailUser

from conftest import OWNER, SUPPORT, World, mail

START = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)  # a Tuesday in business hours
READ_AHEAD_LINE = re.compile(r"read (\d+) of (\d+) messages ahead")
CODE = re.compile(r"[\w-]{20,}")
UIDVALIDITY = re.compile(r"(INBOX:)\d+:")


def backlog() -> list[bytes]:
    """Mail of every kind the pipeline tells apart, 16 of them: 4 batches of 4."""
    mails = [
        mail("Hi, my order 77120 has not arrived yet.", sender="Ada <ada@example.org>", subject="Parcel"),
        mail("The mug arrived broken, the handle is cracked.", sender="bo@example.org", subject="Broken mug"),
        mail("Please cancel my order 77121.", sender="cy@example.org", subject="Cancel"),
        mail("I am out of the office.", sender="away@example.org", subject="Automatic reply: Parcel",
             headers={"Auto-Submitted": "auto-replied"}),
        mail("Wo ist meine Bestellung 77122? Sie ist noch nicht angekommen.", sender="dora@example.org",
             subject="Bestellung"),
        mail("Do you ship to Norway?", sender="ed@example.org", subject="Shipping"),
        mail("THIRD time writing!!! Where is my refund, this is unacceptable.", sender="fay@example.org",
             subject="Refund"),
        mail("Hello, a question about sizes: do the shirts run small?", sender="gus@example.org", subject="Sizes"),
        mail("Please unsubscribe me from your newsletter.", sender="hal@example.org", subject="Newsletter"),
        mail("Where is my order?", sender="Ada <ada@example.org>", subject="Parcel again"),
        mail("Hello", sender="ivy@example.org", subject="Re: Parcel", headers={"In-Reply-To": "<nothing@x>"}),
        mail("Your message could not be delivered.", sender="mailer-daemon@example.org",
             subject="Undelivered Mail Returned to Sender"),
        mail("I want to return the lamp, it is the wrong colour.", sender="jo@example.org", subject="Return"),
        mail("Where is my order 77123?", sender="kim@example.org", subject="Parcel",
             headers={"List-Id": "<customers.example.org>"}),
        mail("Thank you!", sender=f"Shop owner <{OWNER}>", subject="Thanks"),
        mail("My parcel says delivered but it is not here. Order 77124.", sender="lu@example.org",
             subject="Lost parcel"),
    ]
    return mails


def second_mailbox(world: World, name: str) -> World:
    """Another support mailbox on the same Dovecot and SMTP server, answering for the same address."""
    user = MailUser(f"{name}@imap.test", f"pw-{name}")
    world.dovecot.add_user(user)
    root = world.root / name
    root.mkdir()
    return World(root=root, dovecot=world.dovecot, sink=world.sink, user=user,
                 sections={"shop": {"support_address": SUPPORT}})


def replies_of(box: World) -> dict[str, list[str]]:
    """Each customer's replies from one mailbox (its Sent folder), with the confirmation codes blanked."""
    client = box.imap()
    try:
        client.select_folder("Sent", readonly=True)
        uids = client.search("ALL")
        raws = [data[b"BODY[]"] for data in client.fetch(uids, ["BODY.PEEK[]"]).values()] if uids else []
    finally:
        client.logout()
    found: dict[str, list[str]] = {}
    for raw in raws:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        found.setdefault(str(msg["To"]), []).append(blank_codes(f"{msg['Subject']}\n{text}"))
    return {to: sorted(texts) for to, texts in found.items()}


def summaries(report_plans: list[dict[str, object]]) -> list[str]:
    """The decisions of a pass, as text, with the random confirmation codes and each mailbox's UIDVALIDITY
    (Dovecot's is the second the mailbox was made: two made a second apart differ) blanked."""
    return [UIDVALIDITY.sub(r"\1UIDVALIDITY:", blank_codes(repr(plan))) for plan in report_plans]


def blank_codes(text: str) -> str:
    """The text with the random confirmation codes (27 URL-safe characters) blanked."""
    return CODE.sub("CODE", text)


def test_a_backlog_read_ahead_is_decided_and_answered_as_if_read_here(world: World, caplog) -> None:  # type: ignore[no-untyped-def]
    """16 mails of every kind, read ahead in a second process or here: the same decisions, the same replies."""
    here = second_mailbox(world, "here")
    world.write_config(limits={"batch_size": 4, "read_ahead_processes": 1})
    here.write_config(limits={"batch_size": 4, "read_ahead_processes": 0})
    for raw in backlog():
        world.deliver(raw)
        here.deliver(raw)
    with caplog.at_level(logging.INFO, logger="supportd.service.pipeline"):
        ahead_report = world.once(FakeClock(START))
        read_ahead = [READ_AHEAD_LINE.search(r.getMessage()) for r in caplog.records]
        here_report = here.once(FakeClock(START))
    [found] = [m for m in read_ahead if m]
    assert int(found.group(1)) == 12  # the first batch is read here while the process starts
    assert ahead_report.handled == here_report.handled == 16
    assert summaries(ahead_report.plans) == summaries(here_report.plans)
    assert replies_of(world) == replies_of(here)
    assert ahead_report.acknowledged >= 8


def test_a_read_ahead_process_killed_mid_pass_loses_nothing_and_answers_nothing_twice(
        world: World, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """The read-ahead process dies at its 6th message: this process reads the rest; everyone answered once."""
    monkeypatch.setenv("SUPPORTD_CRASH_AT", "reading@6")  # read by the spawned process only
    world.write_config(limits={"batch_size": 4})
    customers = [f"c{n}@example.org" for n in range(20)]
    for n, address in enumerate(customers):
        world.deliver(mail(f"Where is my order {77000 + n}?", sender=address, subject=f"Order {n}"))
    with caplog.at_level(logging.INFO):
        report = world.once(FakeClock(START))
    assert any("read-ahead process died" in r.getMessage() for r in caplog.records)
    assert report.handled == report.acknowledged == 20
    assert sorted(r for m in world.sink.messages for r in m.rcpt_tos) == sorted(customers)
    assert all(b"$SupportdHandled" in flags for flags in world.flags().values())
    world.once(FakeClock(START))
    assert len(world.sink.messages) == 20


def test_a_message_too_slow_in_the_read_ahead_process_is_set_aside_as_here(world: World) -> None:
    """An owner's runaway regex meets a mail read ahead: it is quarantined at once, the rest answered."""
    world.add_rule_file("15-slow.yaml", "intent: slow\npriority: 95\nreply: other\nactions: [open_ticket]\n"
                        "rules:\n  - name: runaway\n    text: {regex: '(a+)+$'}\n")
    world.write_config(limits={"decision_seconds": 0.5, "batch_size": 3})
    customers = [f"c{n}@example.org" for n in range(8)]
    for n, address in enumerate(customers[:5]):
        world.deliver(mail(f"Where is my order {77000 + n}?", sender=address, subject=f"Order {n}"))
    world.deliver(mail("a" * 40 + "!", sender="eve@example.org", subject="Slow"))  # UID 6: the 2nd batch, read ahead
    for n, address in enumerate(customers[5:], start=5):
        world.deliver(mail(f"Where is my order {77000 + n}?", sender=address, subject=f"Order {n}"))
    started = time.monotonic()
    report = world.once(FakeClock(START))
    assert time.monotonic() - started < 60
    assert report.quarantined == 1 and report.acknowledged == 8
    assert world.sent_to("eve@example.org") == []
    [alert] = world.sent_to(OWNER)
    assert "limits.decision_seconds" in alert.get_content()


def test_read_ahead_is_off_for_a_lone_message_and_with_zero_processes(world: World, caplog) -> None:  # type: ignore[no-untyped-def]
    """A single new message (from IDLE) is read here, at once; so is a backlog with read_ahead_processes 0."""
    world.write_config(limits={"batch_size": 2, "read_ahead_processes": 0})
    for n in range(5):
        world.deliver(mail("Where is my order?", sender=f"c{n}@example.org"))
    with caplog.at_level(logging.INFO, logger="supportd.service.pipeline"):
        world.once(FakeClock(START))
        world.write_config(limits={"read_ahead_processes": 1})
        world.deliver(mail("Where is my order?", sender="late@example.org"))
        report = world.once(FakeClock(START))
    assert report.acknowledged == 1
    assert not any(READ_AHEAD_LINE.search(r.getMessage()) for r in caplog.records)


def test_a_read_ahead_process_that_hangs_is_stopped_and_its_messages_read_here(
        world: World, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """The read-ahead process stops dead on a message: supportd stops waiting, kills it, answers everyone once."""
    monkeypatch.setenv("SUPPORTD_CRASH_AT", "reading%Stuck")  # SIGSTOP: alive, silent, for ever
    world.write_config(limits={"batch_size": 4, "decision_seconds": 0.2})
    customers = [f"c{n}@example.org" for n in range(16)]
    for n, address in enumerate(customers):
        world.deliver(mail(f"Where is my order {77000 + n}?", sender=address,
                           subject="Stuck parcel" if n == 12 else f"Order {n}"))  # in the 4th batch
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        report = world.once(FakeClock(START))
    assert time.monotonic() - started < 40
    assert any("read-ahead process sent nothing" in r.getMessage() for r in caplog.records)
    assert report.handled == report.acknowledged == 16
    assert sorted(r for m in world.sink.messages for r in m.rcpt_tos) == sorted(customers)


def test_a_reload_of_the_rules_reaches_the_read_ahead_process(world: World, caplog) -> None:  # type: ignore[no-untyped-def]
    """After a reload (SIGHUP or an edited file) the next backlog is read ahead with the new rules."""
    world.add_rule_file("15-sizing.yaml", "intent: sizing\npriority: 95\nreply: other\nrules:\n"
                        "  - name: shoe-size\n    text: [shoe size]\n")
    world.write_config(limits={"batch_size": 3})
    daemon = world.daemon(FakeClock(START))
    for n in range(6):
        world.deliver(mail("Which boot size should I order?", sender=f"a{n}@example.org", subject=f"Boots {n}"))
    daemon.mailbox.connect()
    try:
        before = daemon.pipeline.run_pass()
        (world.rules_dir / "15-sizing.yaml").write_text("intent: sizing\npriority: 95\nreply: other\nrules:\n"
                                                        "  - name: shoe-size\n    text: [shoe size, boot size]\n")
        daemon.reload_asked = True  # what SIGHUP, or the edit noticed while waiting, sets
        daemon._reload_if_asked()
        for n in range(6):
            world.deliver(mail("Which boot size should I order?", sender=f"b{n}@example.org", subject=f"Boots {n}"))
        daemon.mailbox.close()  # a fresh session sees the new mail at once (the daemon syncs before each pass)
        daemon.mailbox.connect()
        with caplog.at_level(logging.INFO, logger="supportd.service.pipeline"):
            after = daemon.pipeline.run_pass()
    finally:
        daemon.close()
    assert [plan["rule"] for plan in before.plans] == ["other"] * 6
    assert [plan["rule"] for plan in after.plans] == ["shoe-size"] * 6
    assert any("read 3 of 6 messages ahead" in r.getMessage() for r in caplog.records)


def test_a_read_ahead_that_cannot_start_leaves_every_message_read_here(
        world: World, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """No room for the rules' file (a full or missing temp folder): the backlog is read here, all answered once."""
    import supportd.service.readahead

    def no_room(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(supportd.service.readahead.tempfile, "TemporaryFile", no_room)
    world.write_config(limits={"batch_size": 3})
    for n in range(9):
        world.deliver(mail("Where is my order?", sender=f"c{n}@example.org", subject=f"Order {n}"))
    with caplog.at_level(logging.INFO):
        report = world.once(FakeClock(START))
    assert any("cannot start reading ahead" in r.getMessage() for r in caplog.records)
    assert report.handled == report.acknowledged == 9 and len(world.sink.messages) == 9


def test_the_patterns_a_read_ahead_process_gets_are_compiled_at_first_use_and_match_the_same() -> None:
    """The rules' patterns reach a read-ahead process uncompiled; used, they find what the originals
    find, they compare equal to them, and one sent back (in a reading's FAQ entry) is compiled again."""
    originals = [re.compile(r"\bwrong\s+(size|colou?r)\b", re.IGNORECASE), re.compile(r"(?!)")]
    handed = _ReaderFile(originals)  # type: ignore[arg-type]  # any value pickles as a Reader does
    try:
        handed.file.seek(0)
        copies = pickle.loads(handed.file.read())
    finally:
        handed.close()
    assert [c._compiled for c in copies] == [None, None]
    assert copies == originals
    text = "It is the WRONG  colour, and the wrong size."
    assert [m.span() for m in copies[0].finditer(text)] == [m.span() for m in originals[0].finditer(text)]
    assert copies[0].search(text).group(1) == "colour" and copies[1].search(text) is None
    assert "search" in vars(copies[0]) and copies[0].search(text).group(1) == "colour"  # kept on the copy
    back = pickle.loads(pickle.dumps(copies))
    assert all(isinstance(p, re.Pattern) for p in back) and back == originals
