"""Never to a robot: bounces, auto-replies, lists and reports get nothing; customers still get an answer."""

from __future__ import annotations

import collections
import csv
import email.policy
import email.utils
import fnmatch
import io
import zipfile
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supportd.decide import guard
from supportd.intake.message import Inbound, parse

from conftest import CORPUS, SUPPORT, World, corpus_file, corpus_path, mail
from planning import offline_context, own_recipient, plan_for

ROBOT_LABELS = ("bounce", "auto-reply", "list", "feedback-report")
# Human messages of the corpus (label "normal"): a cat's "nyaa" and a note with an attached .eml.
HUMAN_CORPUS_MAIL = ("sisimai-set-of-emails/maildir/not/is-not-bounce-01.eml",
                     "sisimai-set-of-emails/maildir/not/is-not-bounce-02.eml")


def corpus_rows(*labels: str) -> list[dict[str, str]]:
    with (corpus_path() / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["label"] in labels]


def judge(msg: Inbound) -> tuple[bool, list[guard.Verdict]]:
    """(acknowledged?, robot signs) with the support address set to the message's own recipient."""
    ctx = offline_context(own_recipient(msg))
    plan = plan_for(ctx, msg)
    return plan.customer_reply is not None, guard.robot_signs(msg, ctx.guard_settings)


def held_by(msg: Inbound) -> str | None:
    """The check that holds the reply back, for mail sent to the support address."""
    return guard.check(msg, offline_context().guard_settings).check or None


def multipart_mail(body: str, attachments: dict[str, bytes], subject: str = "My order") -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Ada Lovelace <ada@example.org>"
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    msg.set_content(body)
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


def plain_mail(text: str) -> bytes:
    """A minimal customer email (built by hand: the email package is slow for thousands)."""
    subject = " ".join(text.split())[:60]
    return (f"From: Ada Lovelace <ada@example.org>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(text))}@example.org>\r\nDate: Tue, 24 Nov 2026 09:00:00 +0000\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n").encode()


# ---------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus_robots() -> list[tuple[str, Inbound]]:
    """Every bounce, auto-reply, list mail and feedback report of the corpus, parsed (once per module)."""
    return [(row["path"], parse((CORPUS / row["path"]).read_bytes())) for row in corpus_rows(*ROBOT_LABELS)]


def test_no_robot_in_the_corpus_gets_an_acknowledgment(corpus_robots: list[tuple[str, Inbound]]) -> None:
    """Every corpus bounce, auto-reply, list mail and feedback report is held back by a robot sign."""
    assert len(corpus_robots) > 1000
    acknowledged, unmarked = [], []
    for path, msg in corpus_robots:
        acked, signs = judge(msg)
        if acked:
            acknowledged.append(path)
        if not signs:
            unmarked.append(path)
    assert acknowledged == []
    assert unmarked == []  # none is held back only because it was "not addressed to us"


def test_corpus_robots_are_recognised_by_many_kinds_of_signs(corpus_robots: list[tuple[str, Inbound]]) -> None:
    """The first sign per corpus robot spreads over headers, report structure, senders and texts."""
    first: collections.Counter[str] = collections.Counter()
    for _path, msg in corpus_robots:
        first[guard.robot_signs(msg, offline_context(own_recipient(msg)).guard_settings)[0].check] += 1
    for check in ("null-sender", "auto-submitted", "report", "list-header", "robot-sender", "robot-subject",
                  "forwarded-robot-mail", "delivery-report-text", "challenge-response", "dangerous-attachment"):
        assert first[check] >= 1, check


def test_the_text_prefilter_changes_no_finding(corpus_robots: list[tuple[str, Inbound]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The robot texts (bounce wording, challenges, bulk footers) are scanned only where their words are:
    every check's finding on every corpus robot is what it is with every text scanned."""
    settings = offline_context().guard_settings
    prefiltered = [guard.findings(msg, settings) for _path, msg in corpus_robots]
    monkeypatch.setattr(guard, "_ruled_out", lambda text: frozenset())
    assert [guard.findings(msg, settings) for _path, msg in corpus_robots] == prefiltered
    checks = collections.Counter(v.check for found in prefiltered for v in found)
    assert min(checks["delivery-report-text"], checks["challenge-response"], checks["bulk-text"]) >= 1


@pytest.mark.parametrize("relative", HUMAN_CORPUS_MAIL)
def test_a_real_person_from_the_corpus_gets_an_acknowledgment(relative: str) -> None:
    """A human email from the corpus, sent to the support address, is answered."""
    msg = parse(corpus_file(relative).read_bytes())
    acked, signs = judge(msg)
    assert signs == []
    assert acked


def test_customer_utterances_show_no_robot_sign() -> None:
    """Two thousand real customer-service sentences, each as an email: none looks like a robot."""
    path = corpus_path() / "intents" / "dev.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    settings = offline_context().guard_settings
    held = [text for text in texts if guard.robot_signs(parse(plain_mail(text)), settings)]
    assert len(texts) > 2000
    assert held == []


def test_corpus_robots_get_nothing_through_the_real_servers(world: World) -> None:
    """A bounce, a vacation reply, list mail, a feedback report and a challenge: no mail goes out."""
    files = ("flufl-bounce/flufl/bounce/tests/data/simple_15.txt",
             "perl-bounceparser/t/corpus/bluebottle.msg",
             "sisimai-set-of-emails/maildir/bsd/arf-22.eml",
             "sisimai-set-of-emails/maildir/bsd/lhost-fml-03.eml",
             "sisimai-set-of-emails/maildir/bsd/lhost-verizon-02.eml",
             "perl-bounceparser/xt/corpus/virus-caused-multiple-weird-reports.msg")
    raws = [corpus_file(f).read_bytes() for f in files]
    aliases = sorted({own_recipient(parse(raw)) for raw in raws})
    world.write_config(shop={"aliases": aliases})
    for raw in raws:
        world.deliver(raw)
    report = world.once()
    assert report.handled == len(files)
    assert world.sent() == []
    assert all(str(plan["skip_reason"]).startswith("guard:") for plan in report.plans)


def test_list_mail_and_generated_mail_into_the_mailbox_get_nothing_a_person_gets_an_answer(world: World) -> None:
    """Delivered INTO the support mailbox and addressed to it: the robots get nothing, the person an answer."""
    listserv = mail("New thread: which glaze for mugs?", sender="Bob <bob@example.net>", subject="Glazes",
                    headers={"Sender": "owner-potters-l@listserv.example.edu",
                             "Return-Path": "<owner-potters-l@listserv.example.edu>"})
    generated = mail("Stock of mug-blue is low.", sender="Shop System <system@erp.example.net>",
                     subject="[AUTO GENERATED] Stock alert")
    person = mail("Hello, where is my order 77120?", sender="Carla <carla@corp.example>",
                  headers={"X-Auto-Response-Suppress": "DR, RN, NRN, OOF, AutoReply",
                           "X-MS-Has-Attach": "", "Thread-Index": "AdlQx1234567890=="})
    for raw in (listserv, generated, person):
        world.deliver(raw)
    report = world.once()
    assert report.handled == 3
    assert [m["To"] for m in world.sent()] == ["Carla <carla@corp.example>"]
    reasons = [plan["skip_reason"] for plan in report.plans]
    assert reasons[0].startswith("guard:list-server-sender") and reasons[1].startswith("guard:robot-subject")
    assert reasons[2] is None


# ---------------------------------------------------------------- each sign, and its customer twin


def test_skip_reason_names_the_check() -> None:
    """`supportd try` says which guard check held the reply back, with the header that showed it."""
    plan = plan_for(offline_context(), parse(mail(headers={"Auto-Submitted": "auto-replied"})))
    assert plan.customer_reply is None
    assert plan.skip_reason == "guard:auto-submitted (Auto-Submitted: auto-replied)"


def test_plain_customer_mail_passes() -> None:
    """An ordinary question to the support address is not held back."""
    assert held_by(parse(mail("Hello, where is my order 77120? It has not been delivered yet."))) is None


@pytest.mark.parametrize(("headers", "check"), [
    ({"Auto-Submitted": "auto-generated"}, "auto-submitted"),
    ({"List-Id": "<news.example.org>"}, "list-header"),
    ({"X-Mailman-Version": "2.1.5"}, "list-header"),
    ({"X-MLServer": "fml [fml 4.0.3]"}, "list-header"),
    ({"Precedence": "bulk"}, "precedence"),
    ({"X-Autoreply": "yes"}, "auto-reply-header"),
    ({"Return-Path": "<MAILER-DAEMON@mx.example.net>"}, "robot-sender"),
    ({"Return-Path": "<>"}, "null-sender"),
    ({"X-Bluebottle-Request": "<1234>"}, "challenge-response"),
    ({"X-Spam-Flag": "YES"}, "spam-flag"),
])
def test_robot_headers_hold_the_reply_back(headers: dict[str, str], check: str) -> None:
    """Each standard or real-world robot header is enough on its own."""
    assert held_by(parse(mail(headers=headers))) == check


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx.example.net", "postmaster@example.net",
                                    "post_master@vtext.example.com", "no-reply@shop.example.net",
                                    "news-request@lists.example.org", "owner-news@lists.example.org"])
def test_robot_senders_hold_the_reply_back(sender: str) -> None:
    """Robot mailbox names (RFC 3834's list and what carriers use) never get a reply."""
    assert held_by(parse(mail(sender=sender))) == "robot-sender"


@pytest.mark.parametrize("headers", [
    {"Sender": "owner-shop-l@listserv.example.edu"},
    {"Return-Path": "<owner-shop-l@listserv.example.edu>"},
    {"Sender": "SHOP-L-request@lists.example.org"},
    {"Return-Path": "<LISTSERV@listserv.example.edu>"},
    {"Return-Path": "<shop-talk-bounces+ada=example.org@lists.example.org>"},
])
def test_list_server_sender_or_envelope_holds_the_reply_back(headers: dict[str, str]) -> None:
    """LISTSERV-style list mail (no List-* or Precedence) is known by its list server's address."""
    assert held_by(parse(mail(headers=headers))) == "list-server-sender"


def test_exchange_mail_of_a_person_with_auto_response_suppress_passes() -> None:
    """Exchange adds X-Auto-Response-Suppress to ordinary mail: alone it does not hold a person back."""
    msg = parse(mail(headers={"X-Auto-Response-Suppress": "DR, RN, NRN, OOF, AutoReply"}))
    assert held_by(msg) is None


def test_configured_robot_sender_holds_the_reply_back() -> None:
    """The owner's own guard.robot_senders patterns are honoured."""
    ctx = offline_context(robot_senders=("*@marketplace.example",))
    msg = parse(mail(sender="orders@marketplace.example"))
    assert guard.check(msg, ctx.guard_settings).check == "robot-sender"


def test_customer_whose_mail_came_through_a_web_form_service_passes() -> None:
    """A no-reply envelope (as mail services use) with a customer's From is still a customer."""
    msg = parse(mail(headers={"Return-Path": "<bounce+8a7f@mg.example.net>"}))
    assert held_by(msg) is None


@pytest.mark.parametrize("subject", ["Undelivered Mail Returned to Sender", "Automatic reply: Your order",
                                     "Out of Office: back on Monday", "Mail could not be delivered",
                                     "Loop Alert: Duplicated Message-ID (news ML)",
                                     "complaint about message from 192.0.2.222",
                                     "[AUTO GENERATED] Nightly stock report", "[Automated] Order export done"])
def test_robot_subjects_hold_the_reply_back(subject: str) -> None:
    """Robots that leave out the headers still say what they are in the subject."""
    assert held_by(parse(mail("-", subject=subject))) == "robot-subject"


@pytest.mark.parametrize("subject", ["Absence of tracking information", "Delivery failed?",
                                     "Returned item: refund?", "Re: Where is my order? [#1001]",
                                     "Re: [AUTO GENERATED] Your parcel has shipped"])
def test_customer_subjects_near_robot_ones_pass(subject: str) -> None:
    """Subjects a customer writes about parcels and returns are not taken for a robot's."""
    assert held_by(parse(mail("Hello, can you help me with order 77120?", subject=subject))) is None


def test_forwarded_bounce_without_words_of_their_own_gets_nothing() -> None:
    """'Fwd: Returned mail' with nothing of the sender's own is robot mail passed on."""
    body = ("Forward the message.\n\nBegin forwarded message:\n\n> From: Mail Delivery Subsystem\n"
            "> Subject: Returned mail: see transcript for details\n>\n> User unknown\n")
    msg = parse(mail(body, subject="Fwd: Returned mail: see transcript for details"))
    assert held_by(msg) == "forwarded-robot-mail"


def test_forwarded_bounce_with_a_question_is_answered() -> None:
    """A customer who forwards a bounce and asks something gets an answer."""
    body = ("Hi, I tried to write to you about my order 77120 and got this back. Where is my parcel?\n\n"
            "Begin forwarded message:\n\n> Subject: Returned mail: see transcript for details\n")
    msg = parse(mail(body, subject="Fwd: Returned mail: see transcript for details"))
    assert held_by(msg) is None


@pytest.mark.parametrize("body", [
    "Your message could not be delivered to\nduke@example.net",
    "Votre message n'a pas pu etre delivre a\nduke@example.net",
    "Error: Invalid user address\n\n550 - Requested action not taken: no such user here",
    "Sent <<< RCPT TO:<isam@example.be>\nReceived >>> 550 5.1.1 unknown user.",
    "This is the mail system at host mx.example.net.",
])
def test_bounce_texts_hold_the_reply_back(body: str) -> None:
    """A bounce without the report structure is recognised by what it says."""
    assert held_by(parse(mail(body, subject="RE: your mail"))) == "delivery-report-text"


@pytest.mark.parametrize("body", [
    "My parcel was not delivered and the tracking says returned to sender.",
    "The courier said the package could not be delivered. Can you send it again?",
    "I never got a delivery notification for order 77120.",
])
def test_customers_writing_about_failed_deliveries_are_answered(body: str) -> None:
    """A customer whose parcel did not arrive is no bounce."""
    assert held_by(parse(mail(body, subject="Delivery failed?"))) is None


def test_challenge_response_text_holds_the_reply_back() -> None:
    """'Click to have your address added to the allowed list' would start a loop: nothing goes out."""
    body = ("This account is protected. Please click on the following link to have your address added "
            "to the recipient's allowed list and to ensure delivery of your email.")
    assert held_by(parse(mail(body, subject="RE: My order"))) == "challenge-response"


def test_opt_out_footer_holds_the_reply_back() -> None:
    """Bulk mail's opt-out footer marks it as bulk mail."""
    body = "Big sale today!\n\nIf you no longer wish to receive our offers, you may opt-out here."
    assert held_by(parse(mail(body, subject="Special offer"))) == "bulk-text"


@pytest.mark.parametrize("body", [
    "Please unsubscribe me. I no longer wish to receive your newsletter.",
    "I want to opt out of your mailing list.",
    "Remove my email from your list, please.",
])
def test_customer_asking_to_unsubscribe_is_answered(body: str) -> None:
    """A customer who asks to leave the newsletter is a customer, not bulk mail."""
    assert held_by(parse(mail(body, subject="Unsubscribe"))) is None


def dated_mail(date: str, received: str = "Wed, 7 Jun 2006 11:26:18 -0700") -> Inbound:
    """A customer mail with this Date (bytes as given) and a Received header from the shop's server."""
    head, _, body = mail().partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Date:")]
    lines += [f"Date: {date}".encode(), f"Received: from client.example.org by mx.shop.example; {received}".encode()]
    return parse(b"\r\n".join(lines) + b"\r\n\r\n" + body)


def test_date_years_before_arrival_holds_the_reply_back() -> None:
    """Spam tools forge the Date: one years before the mail arrived is no client's."""
    assert held_by(dated_mail("Fri, 2 Jan 2004 11:43:19 -0330")) == "forged-date"


def test_time_zone_that_does_not_exist_holds_the_reply_back() -> None:
    """A Date in the time zone +0360 (sixty minutes) is written by spam tools, never by a client."""
    assert held_by(dated_mail("Wed, 7 Jun 2006 11:20:12 +0360")) == "forged-date"


def test_date_minutes_before_arrival_passes() -> None:
    """A normal Date, a minute before the server received the mail, is fine."""
    assert held_by(dated_mail("Wed, 7 Jun 2006 11:25:18 -0700")) is None


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"MZ")
    return buffer.getvalue()


def test_program_in_a_zip_holds_the_reply_back() -> None:
    """Malware (a program, zipped) comes from a forged sender: no reply goes out."""
    raw = multipart_mail("Please see the invoice.", {"invoice.zip": _zip("invoice.pdf.exe")})
    assert held_by(parse(raw)) == "dangerous-attachment"


def test_customer_with_photos_of_the_damage_is_answered() -> None:
    """Photos and a zip of photos are what a customer with a broken mug sends."""
    raw = multipart_mail("The mug arrived broken, photos attached.",
                         {"mug.jpg": b"\xff\xd8\xff", "more.zip": _zip("a.jpg", "b.heic")})
    assert held_by(parse(raw)) is None


def test_our_own_address_gets_nothing() -> None:
    """Mail from the support address itself (or an alias) is never answered."""
    assert held_by(parse(mail(sender=SUPPORT))) == "own-address"


def test_mail_not_addressed_to_us_gets_nothing() -> None:
    """A Bcc'd copy or mail for another address gets no automatic reply."""
    assert held_by(parse(mail(to="someone@else.example"))) == "not-addressed-to-us"


def test_mail_without_usable_sender_gets_nothing() -> None:
    """No From address: nobody to answer."""
    assert held_by(parse(b"To: support@shop.example\r\nSubject: hi\r\n\r\nhello\r\n")) == "no-sender"


def test_guard_findings_list_every_sign() -> None:
    """For measuring: findings() names every check that would hold the reply, not only the first."""
    msg = parse(mail("-", subject="Automatic reply: away", headers={"Auto-Submitted": "auto-replied",
                                                                   "Precedence": "junk"}))
    checks = [v.check for v in guard.findings(msg, offline_context().guard_settings)]
    assert checks == ["auto-submitted", "precedence", "robot-subject"]



@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="abo-_@.*?[]!x", min_size=1, max_size=6), max_size=5),
       st.text(alphabet="abo-_@.x", max_size=10))
def test_robot_sender_patterns_match_as_fnmatch_does(patterns: list[str], address: str) -> None:
    """The robot-sender patterns, read as one regex, match exactly what fnmatch matches with any of them."""
    assert bool(guard._any_of(tuple(patterns)).match(address)) == any(fnmatch.fnmatchcase(address, p) for p in patterns)
