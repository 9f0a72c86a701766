"""Our own Message-IDs: signed with the shop's key, recognised only with it."""

from __future__ import annotations

import hashlib
import hmac

from supportd.intake.msgids import make_message_id, read_message_id


def test_ids_are_signed_with_each_shops_own_key() -> None:
    """The nonce and the signature are HMAC-SHA256 with the key (a keyed HMAC is reused: per key)."""
    for secret in (b"a" * 32, b"another-shop-key" * 2, b"a" * 32):
        nonce = hmac.new(secret, b"nonce:ack:1042:fingerprint", hashlib.sha256).hexdigest()[:12]
        signature = hmac.new(secret, f"sig:ack.1042.{nonce}".encode(), hashlib.sha256).hexdigest()[:16]
        message_id = make_message_id(secret, "ack", "1042", "fingerprint", "shop.example")
        assert message_id == f"<sd.ack.1042.{nonce}.{signature}@shop.example>"
        assert read_message_id(secret, message_id) == ("ack", "1042")
        assert read_message_id(b"b" * 32, message_id) is None
