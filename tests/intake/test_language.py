"""Customers in German and English: the language is read from their own words and the reply follows it."""

from __future__ import annotations

import dataclasses
import email.policy
import email.utils
from email.message import EmailMessage

import pytest

from supportd.intake.language import detect_language
from supportd.intake.message import parse

from conftest import SUPPORT, mail
from planning import offline_context, plan_for


@pytest.mark.parametrize(("text", "language"), [
    ("Wo bleibt meine Bestellung 77120?", "de"),
    ("Hallo, ich möchte mein Abo kündigen.", "de"),
    ("Where is my order? It has not arrived yet.", "en"),
    ("Bonjour, où est ma commande?", "fr"),
    ("77120", "xx"),
    ("Ok", "xx"),
])
def test_detect_language_reads_the_words_and_falls_back_when_unsure(text: str, language: str) -> None:
    """Two marker words and a clear lead decide; too little text gives the default."""
    assert detect_language(text, "xx") == language


def reply_of(body: str, subject: str = "", **shop_changes: str) -> str:
    ctx = offline_context()
    if shop_changes:
        ctx = dataclasses.replace(ctx, config=dataclasses.replace(
            ctx.config, shop=dataclasses.replace(ctx.config.shop, **shop_changes)))
    reply = plan_for(ctx, parse(mail(body, subject=subject))).customer_reply
    assert reply is not None
    return reply.summary()["text"]


def test_german_customer_gets_a_german_reply_with_a_german_eta() -> None:
    """'Wo bleibt meine Bestellung?' is answered in German, the answer time in German words too."""
    text = reply_of("Hallo, wo bleibt meine Bestellung 77120? Viele Grüße, Anna")
    assert text.startswith("Hallo") and "Ihre Ticketnummer ist" in text
    assert any(day in text for day in ("heute", "morgen", "Montag", "Dienstag", "Mittwoch"))
    assert "thank you" not in text


def test_english_customer_of_a_german_shop_gets_english() -> None:
    """The customer's words decide, not the shop's language."""
    text = reply_of("Hello, where is my order 77120? It has not arrived yet.", language="de")
    assert text.startswith("Hello") and "Your ticket number is" in text


def test_too_little_to_tell_falls_back_to_the_shops_language() -> None:
    """'77120?' says nothing about the language: a German shop answers in German, an English one in English."""
    assert reply_of("77120?", subject="Re", language="de").startswith("Hallo")
    assert reply_of("77120?", subject="Re").startswith("Hello")


def test_german_confirmation_request_names_the_order_in_german() -> None:
    """A German cancellation request gets the confirmation request in German, with the order and code."""
    plan = plan_for(offline_context(), parse(mail("Bitte stornieren Sie meine Bestellung 77120.",
                                                  subject="Stornierung")))
    assert plan.held_action is not None
    text = plan.mails[0].summary()["text"]
    assert "Bestellung 77120 zu stornieren" in text and "Bestätigungscode:" in text


def with_photo(body: str, name: str = "IMG_2041.jpg") -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Ada Lovelace <ada@example.org>"
    msg["To"] = SUPPORT
    msg["Subject"] = "Broken mug"
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    msg.set_content(body)
    msg.add_attachment(b"\xff\xd8\xff\xe0 not really a jpeg", maintype="image", subtype="jpeg", filename=name)
    return msg.as_bytes()


@pytest.mark.parametrize(("body", "thanks", "asks"), [
    ("The mug arrived broken, photo attached.", "Thank you for the photo", "reply with a photo"),
    ("Die Tasse ist kaputt angekommen, Foto anbei.", "Danke für das Foto", "schicken Sie uns ein Foto"),
])
def test_an_attached_photo_is_thanked_for_not_asked_for(body: str, thanks: str, asks: str) -> None:
    """A defect report with a photo attached is not asked for a photo, in English or German."""
    reply = plan_for(offline_context(), parse(with_photo(body))).customer_reply
    assert reply is not None
    text = reply.summary()["text"]
    assert thanks in text and asks not in text
    without = plan_for(offline_context(), parse(mail(body, subject="Broken mug"))).customer_reply
    assert without is not None and asks in without.summary()["text"]
