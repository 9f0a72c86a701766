"""From raw bytes to what supportd reads: never a crash, and only the customer's own words."""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supportd.intake.message import message_id_of, parse

from conftest import corpus_file, corpus_path


def test_encoded_subject_and_name_are_decoded() -> None:
    """RFC 2047 words in Subject and From come out as text a person can read."""
    raw = (b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>\r\nTo: support@shop.example\r\n"
           b"Subject: =?iso-8859-1?q?Bestellung_kaputt_=FCberall?=\r\nMessage-ID: <a@b>\r\n\r\nHallo\r\n")
    msg = parse(raw)
    assert msg.subject == "Bestellung kaputt überall"
    assert msg.sender is not None and msg.sender.name == "Jürgen Müller"


def test_quoted_reply_and_signature_are_not_the_customers_words() -> None:
    """Only what the customer wrote now is read; our quoted confirmation and their signature are not."""
    body = ("No, don't cancel it.\n\nOn Mon, 23 Nov 2026 at 10:00, Example Shop <support@shop.example> wrote:\n"
            "> you asked us to cancel order 77120.\n> To go ahead, reply yes.\n\n-- \nAda\nUnsubscribe: http://x\n")
    msg = parse(_mail(body))
    assert msg.own_text == "No, don't cancel it."
    assert "cancel order 77120" in msg.full_text


def test_html_only_mail_is_read_as_text() -> None:
    """A message with only an HTML part is turned into plain words for the rules."""
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["From"] = "ada@example.org"
    mail["To"] = "support@shop.example"
    mail["Subject"] = "Help"
    mail.set_content("<p>The mug is <b>broken</b>.</p><blockquote>old stuff</blockquote>", subtype="html")
    msg = parse(mail.as_bytes())
    assert msg.own_text == "The mug is broken."


def test_text_of_an_attached_message_is_not_the_body() -> None:
    """A forwarded message attached as message/rfc822 does not speak for the customer."""
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("Please unsubscribe me")
    outer = EmailMessage(policy=email.policy.SMTP)
    outer["From"] = "ada@example.org"
    outer["To"] = "support@shop.example"
    outer["Subject"] = "FYI"
    outer.set_content("See the attached mail.")
    outer.add_attachment(inner)
    msg = parse(outer.as_bytes())
    assert "unsubscribe" not in msg.own_text.lower()
    assert msg.own_text == "See the attached mail."


def test_delivery_report_is_recognised() -> None:
    """A multipart/report bounce is known as a delivery report (the guard never answers it)."""
    msg = parse(corpus_file("cpython/Lib/test/test_email/data/msg_16.txt").read_bytes())
    assert msg.report_type == "delivery-status"


def test_null_return_path_and_duplicate_message_ids() -> None:
    """Return-Path <> is the null sender; of two Message-ID headers the first is used."""
    raw = (b"Return-Path: <>\r\nFrom: MAILER-DAEMON@example.org\r\nTo: support@shop.example\r\n"
           b"Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\nSubject: x\r\n\r\nbody\r\n")
    msg = parse(raw)
    assert msg.return_path == ""
    assert msg.message_id == "<first@x>"
    assert msg.fingerprint == "mid:<first@x>"


def test_message_without_message_id_gets_a_fingerprint_of_its_bytes() -> None:
    """Mail without a Message-ID is still recognised when seen again (by a hash of its bytes)."""
    raw = b"From: a@example.org\r\nTo: support@shop.example\r\nSubject: x\r\n\r\nbody\r\n"
    assert parse(raw).fingerprint == parse(raw).fingerprint
    assert parse(raw).fingerprint.startswith("sha256:")


def test_reply_subject_is_not_the_customers_own_words() -> None:
    """'Re: Please confirm: cancel order' is our subject coming back, not a request."""
    msg = parse(_mail("ok", subject="Re: Please confirm: cancel order 77120"))
    assert msg.is_reply and msg.own_subject == "" and msg.topic == "Please confirm: cancel order 77120"


def _mail(body: str, subject: str = "Hello") -> bytes:
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["From"] = "Ada <ada@example.org>"
    mail["To"] = "support@shop.example"
    mail["Subject"] = subject
    mail["Message-ID"] = email.utils.make_msgid()
    mail.set_content(body)
    return mail.as_bytes()


HEADER_LINES = st.lists(
    st.tuples(
        st.sampled_from(["From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Content-Type",
                         "Content-Transfer-Encoding", "Return-Path", "Auto-Submitted", "List-Id", "Reply-To"]),
        st.text(max_size=80),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_any_bytes_parse_without_a_crash(raw: bytes) -> None:
    """Whatever arrives, parsing returns a value: a malformed mail is never a reason to stop."""
    msg = parse(raw)
    assert msg.size == len(raw)
    assert "\n" not in msg.subject and "\r" not in msg.subject


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HEADER_LINES, st.text(max_size=2000), st.sampled_from(["7bit", "base64", "quoted-printable", "8bit"]))
def test_mail_shaped_input_parses_and_own_words_come_from_the_body(headers: list[tuple[str, str]], body: str,
                                                                  encoding: str) -> None:
    """Random headers and bodies: no crash, and the customer's words are lines of the body, never invented."""
    lines = [f"{name}: {value}".replace("\r", " ").replace("\n", " ") for name, value in headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")
    msg = parse(raw)
    body_lines = {line.strip() for line in msg.full_text.splitlines()}
    assert all(line.strip() in body_lines for line in msg.own_text.splitlines())
    del encoding


def test_message_id_from_the_headers_alone_is_the_one_the_full_parse_gives() -> None:
    """The Sent folder's quick check of a Message-ID reads every corpus message as the full parse does."""
    files = [p for p in corpus_path().rglob("*") if p.is_file() and p.suffix not in (".md", ".csv", ".jsonl")]
    assert len(files) > 1000
    for path in files:
        raw = path.read_bytes()
        assert message_id_of(raw) == parse(raw).message_id, path
