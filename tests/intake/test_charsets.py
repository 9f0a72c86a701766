"""Decoding bodies and headers whose charset labels lie, without mojibake, U+FFFD or exceptions."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supportd.intake.charsets import decode_bytes, decode_header

from conftest import corpus_file


def corpus_header(relative: str, name: str) -> str:
    """A header of a corpus message as it stands in the file: still encoded and folded."""
    with corpus_file(relative).open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.compat32)
    value = message[name]
    assert value is not None, f"{relative} has no {name} header"
    return str(value)


# --- decode_bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize("declared", ["iso-8859-1", "latin-1", "us-ascii", "windows-1252", None])
def test_utf8_under_a_latin1_or_missing_label_is_read_as_utf8(declared: str | None) -> None:
    """UTF-8 labelled latin-1, ascii, windows-1252 or not at all shows 'Grüße', not 'GrÃ¼ÃŸe'."""
    assert decode_bytes("Viele Grüße, Jürgen".encode(), declared) == "Viele Grüße, Jürgen"


def test_latin1_labelled_utf8_is_read_as_latin1() -> None:
    """A latin-1 body that claims to be UTF-8 shows 'Müller', not 'M\ufffdller'."""
    assert decode_bytes("Müller".encode("latin-1"), "utf-8") == "Müller"


def test_latin1_label_with_windows_quotes_gives_the_quotes() -> None:
    """Outlook's curly quotes and euro sign under an iso-8859-1 label come out as “ ” and €."""
    payload = "“Broken” – 12 €".encode("cp1252")
    assert decode_bytes(payload, "iso-8859-1") == "“Broken” – 12 €"


def test_declared_non_latin_charset_is_trusted() -> None:
    """A KOI8-R or Shift_JIS body decodes with its own label, not as UTF-8 or Windows-1252."""
    assert decode_bytes("Привет, где заказ?".encode("koi8-r"), "koi8-r") == "Привет, где заказ?"
    assert decode_bytes("注文はどこですか".encode("shift_jis"), "Shift_JIS") == "注文はどこですか"


@pytest.mark.parametrize("declared", ["X-UNKNOWN", "unknown-8bit", "none", "base64", '"utf-8"', ""])
def test_unknown_or_odd_label_falls_back(declared: str) -> None:
    """An unknown label is ignored: UTF-8 is tried, then Windows-1252, so the text still reads."""
    assert decode_bytes("Envoyé".encode(), declared) == "Envoyé"
    assert decode_bytes("Envoyé".encode("latin-1"), declared) == "Envoyé"


def test_real_x_unknown_message_from_corpus_reads_correctly() -> None:
    """A real message declaring charset=X-UNKNOWN (really UTF-8) reads 'Envoyé par le service'."""
    path = corpus_file("ruby-mail/spec/fixtures/emails/plain_emails/raw_email10.eml")
    with path.open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.compat32)
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = decode_bytes(payload, message.get_content_charset())
    assert "Envoyé par le service de messagerie texte de Bell Mobilité." in text


def test_bytes_no_codec_accepts_still_decode() -> None:
    """Bytes that are neither UTF-8 nor Windows-1252 fall back to latin-1 instead of failing."""
    assert decode_bytes(b"a\x81b\x8d", "utf-8") == "a\x81b\x8d"


def test_nul_bytes_and_byte_order_mark_are_removed() -> None:
    """NUL bytes and a leading byte order mark do not end up in the text the rules read."""
    assert decode_bytes(b"\xef\xbb\xbfHello\x00 world", "utf-8") == "Hello world"
    assert decode_bytes(b"ab\x00c", None) == "abc"


# --- decode_header ----------------------------------------------------------------------------


def test_q_and_b_encoded_words_are_decoded() -> None:
    """Quoted-printable and base64 encoded words, in UTF-8 and latin-1, show as plain text."""
    assert decode_header("=?utf-8?q?Order_77120_cancelled=3F?=") == "Order 77120 cancelled?"
    assert decode_header("=?iso-8859-1?b?R3L832U=?=") == "Grüße"
    assert decode_header("=?ISO-8859-1?Q?J=FCrgen?= <j@example.com>") == "Jürgen <j@example.com>"


def test_adjacent_encoded_words_join_without_the_space() -> None:
    """Words split over several encoded words read as one ('MySurvey.com'), as RFC 2047 says."""
    value = corpus_header("ruby-mail/spec/fixtures/emails/error_emails/bad_subject.eml", "From")
    assert decode_header(value) == "MySurvey.com & Carol Adams <carol@mysurvey.com>"


def test_character_split_across_encoded_words_is_joined() -> None:
    """A UTF-8 'é' whose two bytes a sender put into two encoded words still shows as 'é'."""
    assert decode_header("=?utf-8?q?Caf=C3?= =?utf-8?q?=A9?=") == "Café"


def test_plain_text_between_encoded_words_keeps_its_spaces() -> None:
    """Plain words between encoded words keep their spaces: 'Re: Test: "漢字" mid "漢字" tail'."""
    value = corpus_header(
        "ruby-mail/spec/fixtures/emails/plain_emails/raw_email_with_partially_quoted_subject.eml",
        "Subject",
    )
    assert decode_header(value) == 'Re: Test: "漢字" mid "漢字" tail'


def test_one_broken_word_does_not_spoil_the_rest() -> None:
    """A broken base64 word stays as it was, and the good words around it are still decoded."""
    value = "=?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?b?!!!?= =?iso-8859-1?q?J=FCrgen?="
    assert decode_header(value) == "Grüße =?utf-8?b?!!!?= Jürgen"


def test_bad_base64_padding_is_repaired() -> None:
    """A real subject with a wrong '=' count in charset NONE, '=?NONE?B?VEVTVA=?=', reads 'TEST'."""
    value = corpus_header(
        "ruby-mail/spec/fixtures/emails/error_emails/bad_encoded_subject.eml", "Subject"
    )
    assert decode_header(value) == "TEST"
    assert decode_header("=?utf-8?b?w6k?=") == "é"


def test_unknown_charset_in_header_falls_back() -> None:
    """An encoded word in an unknown charset is decoded as UTF-8 or Windows-1252 instead."""
    assert decode_header("=?x-unknown?q?caf=E9?=") == "café"
    assert decode_header("=?x-unknown?q?caf=C3=A9?=") == "café"


def test_encoded_word_in_quoted_display_name_is_decoded() -> None:
    """A real From header with an encoded word inside quotes shows the sender's name readably."""
    value = corpus_header(
        "ruby-mail/spec/fixtures/emails/error_emails/invalid_subject_characters.eml", "From"
    )
    assert decode_header(value) == '"Formação Frenetikpolis" <info@formacaofrenetik.info>'


def test_folded_header_becomes_one_line() -> None:
    """A header folded over several lines reads as one line with single spaces."""
    folded = "Where is my\r\n order 77120?\n\tIt was due"
    assert decode_header(folded) == "Where is my order 77120? It was due"


def test_header_without_encoded_words_is_unchanged() -> None:
    """An ordinary subject, even with '=?' that is not an encoded word, is returned as it is."""
    assert decode_header("Order 77120 =? where") == "Order 77120 =? where"
    assert decode_header("") == ""


# --- properties -------------------------------------------------------------------------------

_CHARSET_LABELS = ["utf-8", "UTF-8", "iso-8859-1", "x-unknown", "none", "utf-16", "base64", "idna"]
_CHARSET_LABELS += ["utf-8*en", "koi8-r"]
_ENCODED_WORDS = st.builds(
    "=?{}?{}?{}?=".format,
    st.sampled_from(_CHARSET_LABELS),
    st.sampled_from(["q", "Q", "b", "B"]),
    st.text(alphabet="ABCDEFabcdef0123456789+/=_ é\x00", max_size=24),
)
_HEADERS = st.one_of(
    st.text(),
    st.lists(
        st.one_of(_ENCODED_WORDS, st.sampled_from([" ", "\r\n ", "\n\t", "x"]), st.text(max_size=5))
    ).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(_HEADERS)
def test_decode_header_never_raises(value: str) -> None:
    """Any header value, broken encoded words and all, gives one line of text and no exception."""
    decoded = decode_header(value)
    assert "\r" not in decoded
    assert "\n" not in decoded


@settings(max_examples=300, deadline=None)
@given(
    st.binary(),
    st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["utf-8", "latin-1", "utf-16"])),
)
def test_decode_bytes_never_raises(payload: bytes, declared: str | None) -> None:
    """Any payload under any label gives text without NUL characters."""
    assert "\x00" not in decode_bytes(payload, declared)
