"""The weekly digest: one email to the owner a week, on time, with the week's facts.

The week is driven with a FakeClock through a real Dovecot and a real SMTP server: customers
write, robots write, a customer confirms a cancellation, another refuses one, a third never
answers, a message is too big to handle. The digest is then read as the owner reads it.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import threading
import zoneinfo
from email.message import EmailMessage
from pathlib import Path

import pytest

from supportd.act.resolve import resolve_ticket
from supportd.base.clock import FakeClock
from supportd.owner.alerts import human_duration
from supportd.owner.unanswered import keywords
from supportd.service import cli

from conftest import OWNER, World, mail

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
DIGEST_SETTINGS = {"weekday": "monday", "time": "08:00", "timezone": "Europe/Berlin"}


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> dt.datetime:
    """A moment in March 2026 (or ``month``), Berlin time. 2 March 2026 is a Monday."""
    return dt.datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


def configure(world: World) -> None:
    world.write_config(digest=DIGEST_SETTINGS, hours={"timezone": "Europe/Berlin"},
                       limits={"max_message_bytes": 40_000})


def digests(world: World) -> list[EmailMessage]:
    return [m for m in world.sent_to(OWNER) if str(m["Subject"]).strip().startswith("[supportd] your week")]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def answer(ours: EmailMessage, text: str, sender: str) -> bytes:
    """The customer's reply to one of our mails, quoting it, as a mail client sends it."""
    quoted = "\n".join(f"> {line}" for line in text_of(ours).splitlines())
    return mail(f"{text}\n\nExample Shop wrote:\n{quoted}\n", sender=sender, subject=f"Re: {ours['Subject']}",
                headers={"In-Reply-To": ours["Message-ID"], "References": ours["Message-ID"]})


def last_to(world: World, address: str) -> EmailMessage:
    return world.sent_to(address)[-1]


def run_at(world: World, clock: FakeClock, when: dt.datetime, *raws: bytes) -> None:
    """Mail arrives at ``when``; supportd (started afresh, as after a restart) makes one pass."""
    clock.set(when)
    for raw in raws:
        world.deliver(raw, arrived=when)
    world.once(clock)


def a_week(world: World) -> FakeClock:
    """One quiet week (23 Feb - 2 Mar) and one busy one (2 - 9 March 2026), up to Monday 9 March 07:59."""
    configure(world)
    clock = FakeClock(at(24, 10, month=2))
    run_at(world, clock, at(24, 10, month=2), mail("Where is my order 11111?", sender="a@example.org"))
    run_at(world, clock, at(3, 10),
           mail("Hi, my order 77120 has not arrived yet.", sender="b@example.org", subject="Parcel"),
           mail("The mug arrived broken. I'm thinking of unsubscribing from your newsletter.",
                sender="c@example.org", subject="Broken mug"),
           mail("I am out of the office.", sender="ooo@example.org", subject="Automatic reply: hello",
                headers={"Auto-Submitted": "auto-replied"}),
           mail("Our spring offers!", sender="news@example.net", subject="Spring news",
                headers={"List-Id": "<news.example.net>", "List-Unsubscribe": "<mailto:u@example.net>"}))
    run_at(world, clock, at(4, 11),
           mail("Please cancel my order 55501.", sender="h@example.org", subject="Cancel 55501"),
           mail("Please cancel my order 55502.", sender="i@example.org", subject="Cancel 55502"),
           mail("Please cancel my order 55503.", sender="j@example.org", subject="Cancel 55503"))
    run_at(world, clock, at(4, 12), answer(last_to(world, "h@example.org"), "Yes, please go ahead.", "h@example.org"),
           answer(last_to(world, "i@example.org"), "No, don't cancel, I changed my mind.", "i@example.org"))
    clock.set(at(5, 9, 30))  # the owner sorts the broken mug: `supportd resolve 1003`
    ctx = world.daemon(clock).ctx
    with ctx.ledger.locked():
        assert resolve_ticket(ctx, 1003, "A new mug is on its way.").done
    world.once(clock)
    run_at(world, clock, at(5, 10),
           mail("Do you sell a gift voucher for birthdays?", sender="d@example.org", subject="Gift"),
           mail("I would like a gift voucher for my sister's birthday.", sender="e@example.org", subject="Voucher"),
           mail("This is unacceptable!!! Where is my order 66600?", sender="k@example.org", subject="Order?"))
    run_at(world, clock, at(6, 9, 59),  # alerts due by now go out, so the next refusal hits the lamp's ack
           answer(last_to(world, "k@example.org"), "Still nothing. Ridiculous!!!", "k@example.org"))
    world.sink.fail_next(451, "try again later")
    run_at(world, clock, at(6, 10), mail("The lamp does not work.", sender="l@example.org", subject="Lamp"))
    run_at(world, clock, at(6, 12))  # the acknowledgment the server refused at 10:00 goes out now
    run_at(world, clock, at(7, 14), mail("x" * 60_000, sender="m@example.org", subject="Huge"))
    run_at(world, clock, at(9, 7, 59))
    return clock


def test_a_week_gives_one_digest_at_the_configured_time_with_the_counts(world: World) -> None:
    """Monday 08:00 Berlin: exactly one digest for the week, with the week's numbers in its text."""
    clock = a_week(world)
    assert len(digests(world)) == 1  # the quiet week's, sent on Tuesday 3 March's first pass
    run_at(world, clock, at(9, 8, 0))
    assert len(digests(world)) == 2
    digest = digests(world)[-1]
    assert str(digest["Subject"]).strip() == "[supportd] your week to 9 March: 9 requests, 6 overdue"
    text = text_of(digest)
    assert "9 new requests this week (1 the week before), 1 follow-up on open conversations." in text
    assert "7 tickets open, 6 of them overdue; 1 resolved this week." in text
    assert "Acknowledged in under a second (median); the slowest took 2 h." in text
    assert "Confirmations: 3 asked, 1 confirmed, 1 refused, 1 expired; 1 handed to you to make by hand." in text
    assert "1 customer mentioned leaving without asking to" in text
    assert "1 message set aside for you" in text
    assert "2 messages got no automatic reply" in text
    assert re.search(r"Cancellation\s+3 / 0 ", text)
    assert re.search(r"Delivery status\s+2 / 1 ", text)
    assert re.search(r"Defect\s+2 / 0 ", text)
    assert re.search(r"Other\s+2 / 0 ", text)


def test_time_customers_waited_while_supportd_was_down_counts(world: World) -> None:
    """Acknowledgment time runs from the mail's arrival: a down afternoon shows, an old mail moved in does not."""
    configure(world)
    clock = FakeClock(at(3, 9))
    run_at(world, clock, at(3, 9), mail("Where is my order 11111?", sender="a@example.org"))
    world.deliver(mail("My lamp does not work.", sender="b@example.org", subject="Lamp"), arrived=at(3, 10))
    run_at(world, clock, at(3, 15))  # supportd was down from 10:00 to 15:00
    last_year = dt.datetime(2025, 3, 3, 12, tzinfo=BERLIN)  # the owner moves an old mail back to the inbox
    world.deliver(mail("Do you ship to Norway?", sender="c@example.org", subject="Shipping"), arrived=last_year)
    run_at(world, clock, at(3, 15, 2))
    run_at(world, clock, at(9, 8))
    text = text_of(digests(world)[-1])
    assert "Acknowledged in 2 min (median); the slowest took 5 h." in text


def test_the_digest_lists_what_needs_the_owner(world: World) -> None:
    """Overdue tickets with age, the customer thinking of leaving, held-back reasons, alerts, rule candidates."""
    clock = a_week(world)
    run_at(world, clock, at(9, 8, 0))
    text = text_of(digests(world)[-1])
    sections = {block.split(":\n")[0]: block for block in text.split("\n\n")}
    assert "#1001 Where is my order? – a@example.org, open 13 days, 12 days overdue" in sections["Overdue tickets"]
    assert "#1010 Lamp – l@example.org, open 3 days" in sections["Open tickets"]
    assert "#1003" not in sections["Overdue tickets"] + sections["Open tickets"]  # resolved on Thursday
    days = sections["Customer mail per day"]
    assert re.search(r"Tue 3 +2 ", days) and re.search(r"Wed 4 +5 ", days) and re.search(r"Fri 6 +2 ", days)
    assert re.search(r"Sat 7 +0", days)  # the set-aside message and robots are not customer mail
    assert "c@example.org: mentioned unsubscribing (ticket #1003: Broken mug)" in text
    held = sections["Replies held back, and why"]
    assert "1 × automatic reply (out of office, auto-responder)" in held
    assert "1 × mailing list or newsletter" in held
    assert "1 × order cancelled (handed to you: no hook is configured for it)" in sections["Confirmations"]
    alerts = sections["Alerts for you"]
    assert "1 × an upset customer" in alerts and "1 × a message supportd could not handle" in alerts
    assert "1 × a customer said no to a change" in alerts
    assert "2 messages matched no rule; the words they share: gift (2), voucher (2)" in text
    idle = sections["Rules that matched nothing this week"]
    assert "says-delivered-but-not-here" in idle and "broken-or-damaged" not in idle
    assert "larger than limits.max_message_bytes" in sections["Set aside for you (quarantined)"]


def test_alert_count_matches_the_alerts_the_owner_received(world: World) -> None:
    """The digest's alert total is the number of alert emails the owner got that week."""
    clock = a_week(world)
    run_at(world, clock, at(9, 8, 0))
    digest = digests(world)[-1]
    alerts = [m for m in world.sent_to(OWNER) if not str(m["Subject"]).strip().startswith(
        ("[supportd] your week", "[supportd] please"))]
    sent_this_week = [m for m in alerts if dt.datetime(2026, 3, 2, 7, tzinfo=dt.UTC) <= _date(m)
                      < dt.datetime(2026, 3, 9, 7, tzinfo=dt.UTC)]
    found = re.search(r"(\d+) alerts? for you during the week", text_of(digest))
    assert found is not None and int(found.group(1)) == len(sent_this_week) > 3


def _date(message: EmailMessage) -> dt.datetime:
    when = message["Date"].datetime
    assert isinstance(when, dt.datetime)
    assert when.tzinfo is not None  # our Date headers carry the shop's offset
    return when.astimezone(dt.UTC)


def test_no_second_digest_for_the_same_week(world: World) -> None:
    """Jobs run again, supportd restarts, the week ends quietly: still one digest for 9 March."""
    configure(world)
    clock = FakeClock(at(3, 10))
    run_at(world, clock, at(3, 10), mail("Where is my order 1?", sender="a@example.org"))
    run_at(world, clock, at(9, 8, 0))
    daemon = world.daemon(clock)
    for minutes in range(5):
        clock.set(at(9, 8, minutes + 1))
        daemon.jobs.run_all()
    run_at(world, clock, at(9, 9))
    run_at(world, clock, at(15, 23))
    assert len(digests(world)) == 1
    run_at(world, clock, at(16, 8))
    assert len(digests(world)) == 2  # next week's


def test_nothing_before_the_configured_time(world: World) -> None:
    """At Monday 07:59 Berlin (06:59 UTC) nothing is due; the time zone is the digest's, not UTC's."""
    configure(world)
    clock = FakeClock(at(3, 10))
    run_at(world, clock, at(3, 10), mail("Where is my order 1?", sender="a@example.org"))
    run_at(world, clock, at(9, 7, 59))
    assert digests(world) == []
    run_at(world, clock, at(9, 8, 0))
    assert len(digests(world)) == 1


def test_a_digest_missed_while_down_goes_out_when_the_daemon_starts(world: World) -> None:
    """supportd was off on Monday morning: the running daemon sends the digest on its first pass."""
    configure(world)
    clock = FakeClock(at(3, 10))
    run_at(world, clock, at(3, 10), mail("Where is my order 1?", sender="a@example.org"))
    clock.set(at(10, 15))  # Tuesday afternoon: the daemon comes back
    daemon = world.daemon(clock)
    loop = threading.Thread(target=daemon.run)
    loop.start()
    try:
        world.sink.wait_for(3, timeout=15)  # the ack, the overdue alert, the digest
    finally:
        daemon.stopping.set()
        loop.join(timeout=15)
    assert not loop.is_alive()
    [digest] = digests(world)
    assert "1 new request this week" in text_of(digest)
    run_at(world, clock, at(10, 16))
    assert len(digests(world)) == 1


def test_first_week_after_installation_is_not_sent_half_seen(world: World) -> None:
    """Installed on a Wednesday: no digest for a week supportd never saw; the first comes next Monday."""
    configure(world)
    clock = FakeClock(at(4, 10))
    run_at(world, clock, at(4, 10))
    assert digests(world) == []
    run_at(world, clock, at(9, 8, 5))
    assert len(digests(world)) == 1


def test_digest_html_is_self_contained_and_readable(world: World) -> None:
    """HTML with inline styles and bar charts, no images or stylesheets, no ISO timestamps or record ids."""
    clock = a_week(world)
    run_at(world, clock, at(9, 8, 0))
    page = html_of(digests(world)[-1])
    assert "<img" not in page and "<link" not in page and "<style" not in page and "http" not in page
    assert "background:#2a7ae2" in page  # the bars
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", page)
    assert "INBOX:" not in page and "INBOX:" not in text_of(digests(world)[-1])
    assert "2 March to 9 March 2026" in page
    for fact in ("9 new requests this week", "1 customer mentioned leaving", "order cancelled",
                 "#1001 Where is my order?", "gift (2)"):
        assert fact in page


def test_preview_writes_both_parts_and_sends_nothing(world: World, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`supportd digest --preview --out DIR` writes digest.html and digest.txt with the same facts."""
    configure(world)
    world.deliver(mail("The vase arrived broken.", sender="v@example.org", subject="Vase"))
    world.deliver(mail("Where is my order 4242?", sender="w@example.org", subject="Parcel"))
    world.once()
    before = len(world.sent())
    assert cli.main(["digest", "--preview", "--out", str(tmp_path), "--config", str(world.config_path)]) == 0
    html_text = (tmp_path / "digest.html").read_text()
    text = (tmp_path / "digest.txt").read_text()
    for fact in ("2 new requests this week (0 the week before)", "2 tickets open"):
        assert fact in text and fact in html_text
    assert len(world.sent()) == before
    assert "nothing sent" in capsys.readouterr().out


def test_send_mails_the_digest_now(world: World) -> None:
    """`supportd digest --send` sends the owner the last seven days' digest at once."""
    configure(world)
    world.deliver(mail("The vase arrived broken.", sender="v@example.org", subject="Vase"))
    world.once()
    assert cli.main(["digest", "--send", "--config", str(world.config_path)]) == 0
    [digest] = digests(world)
    assert "1 new request this week" in text_of(digest)
    assert digest.get_body(("html",)) is not None


# ---------------------------------------------------------------- pure parts


def test_keywords_skip_common_words() -> None:
    """The 'words they share' are telling words, not 'would' or 'please'."""
    assert keywords("Hello, I would like to buy a gift voucher, please. Thanks!") == ["gift", "voucher"]


@pytest.mark.parametrize(("seconds", "words"), [
    (0.3, "under a second"), (42, "42 s"), (1020, "17 min"), (7500, "2 h 5 min"), (50_400, "14 h"),
    (3 * 86400, "3 days"),
])
def test_durations_read_like_a_person_says_them(seconds: float, words: str) -> None:
    """Times in the digest and alerts are '2 h 5 min', never 7500.0 seconds."""
    assert human_duration(seconds) == words


def test_changes_made_by_a_hook_are_counted(world: World, tmp_path: Path) -> None:
    """A confirmed cancellation that the shop's hook carried out shows as a change made, by name."""
    hook = world.root / "hook.py"
    hook.write_text("import sys\nsys.stdin.read()\n")
    world.write_config(actions={"cancel_order": {"command": [sys.executable, str(hook)]}})
    world.deliver(mail("Please cancel my order 55501.", sender="h@example.org", subject="Cancel"))
    world.once()
    world.deliver(answer(last_to(world, "h@example.org"), "Yes, please.", "h@example.org"))
    world.once()
    assert cli.main(["digest", "--preview", "--out", str(tmp_path), "--config", str(world.config_path)]) == 0
    text = (tmp_path / "digest.txt").read_text()
    assert "Confirmations: 1 asked, 1 confirmed, 0 refused, 0 expired; 1 change made." in text
    assert "  - 1 × order cancelled\n" in text


# ---------------------------------------------------------------- the page's template


def own_template(world: World, source: str) -> Path:
    """The owner's restyled page, in templates/ beside their config."""
    path = world.config_path.parent / "templates" / "digest.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return path


def test_customer_text_in_the_digest_page_stays_text(world: World, tmp_path: Path) -> None:
    """A subject with markup or template syntax is shown as written on the page: escaped, never run."""
    configure(world)
    world.deliver(mail("The vase arrived broken.", sender="v@example.org",
                       subject="<script>x</script>{{ config }}{% if 1 %}y{% endif %}"))
    world.once()
    assert cli.main(["digest", "--preview", "--out", str(tmp_path), "--config", str(world.config_path)]) == 0
    page = (tmp_path / "digest.html").read_text()
    assert "#1001 &lt;script&gt;x&lt;/script&gt;{{ config }}{% if 1 %}y{% endif %} – v@example.org" in page
    assert "<script" not in page


def test_the_owner_restyles_the_page_with_a_template_beside_the_config(world: World, tmp_path: Path) -> None:
    """templates/digest.html beside the config replaces the shipped page; the text part stays as it is."""
    configure(world)
    own_template(world, "<html><body style=\"background:#000\"><h1>{{ shop }}: {{ week }}</h1>\n"
                        "{% for s in sections %}<h2>{{ s.title }}</h2>{% for i in s.items %}<p>{{ i }}</p>"
                        "{% endfor %}{% endfor %}</body></html>\n")
    world.deliver(mail("The vase arrived broken.", sender="v@example.org", subject="Vase"))
    world.once()
    assert cli.main(["check", "--config", str(world.config_path)]) == 0
    assert cli.main(["digest", "--send", "--config", str(world.config_path)]) == 0
    [sent] = digests(world)
    page = html_of(sent)
    assert page.startswith('<html><body style="background:#000"><h1>Example Shop: ')
    assert "<h2>Open tickets</h2><p>#1001 Vase – v@example.org, open" in page
    assert "could not be used" not in page + text_of(sent)


@pytest.mark.parametrize(("source", "line", "what"), [
    ("<p>{{ shop }}</p>\n<p>{% for t in tiles %}{{ t.number }}</p>\n", 2, "Unexpected end of template"),
    ("<p>{{ shop }}</p>\n\n<p>{{ no_such_value }}</p>\n", 3, "'no_such_value' is undefined"),
    ("<p>{{ shop }}</p>\n<p>{{ shop.__class__.__mro__ }}</p>\n", 2, "unsafe"),
])
def test_a_broken_page_template_is_named_and_the_digest_still_goes_out(
        world: World, capsys: pytest.CaptureFixture[str], source: str, line: int, what: str) -> None:
    """check names the file and line; the digest goes out with the shipped page and says why."""
    configure(world)
    path = own_template(world, source)
    world.deliver(mail("The vase arrived broken.", sender="v@example.org", subject="Vase"))
    world.once()
    capsys.readouterr()
    assert cli.main(["check", "--config", str(world.config_path)]) != 0
    reported = capsys.readouterr().out
    assert f"{path}:{line}: digest template: " in reported and what in reported
    assert cli.main(["digest", "--send", "--config", str(world.config_path)]) == 0
    [sent] = digests(world)
    for part in (text_of(sent), html_of(sent)):
        assert "your digest template could not be used" in part and f"digest.html:{line}" in part
        assert "1 new request this week" in part  # the facts are all there, from the shipped page
    assert "background:#2a7ae2" in html_of(sent)


def test_the_causes_one_alert_mail_names_count_as_one_alert_however_far_apart_they_were_recorded() -> None:
    """An upset customer writing the third time raises two causes in one alert mail; on a busy machine the two
    history records are written milliseconds apart, and the digest still counts one alert (it counted two)."""
    from supportd.owner import digest

    end = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    facts = digest.DigestFacts(week=digest.Week(end - dt.timedelta(days=7), end, zoneinfo.ZoneInfo("UTC")), now=end)
    for cause, at in (("upset", "2026-11-30T10:00:00.001+00:00"), ("repeat", "2026-11-30T10:00:00.003+00:00")):
        digest._count_record(facts, {"type": "escalation", "id": f"{cause}:INBOX:1:7", "at": at, "cause": cause,
                                     "channel": "mail", "mail": "<sd.owner.7@shop.example>"}, {})
    digest._count_record(facts, {"type": "escalation", "id": "overdue:1001", "at": "2026-11-30T12:00:00.000+00:00",
                                 "cause": "overdue", "channel": "mail", "mail": "<sd.owner.8@shop.example>"}, {})
    assert facts.alerts == 2
    assert sum(facts.escalations.values()) == 3
