"""`verify_webhook` per the Standard Webhooks specification: the spec's own vector, and signatures
computed here from first principles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from genq_client import WebhookVerificationError, verify_webhook

# The specification's published vector (standard-webhooks/standard-webhooks, libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105
SPEC_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
SPEC_BODY = b'{"test": 2432232314}'

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOW = 1_750_000_000
BODY = json.dumps({"type": "job.succeeded", "data": {"id": "01JQ", "status": "succeeded"}}).encode()


def signed(body: bytes = BODY, *, at: int = NOW, msg_id: str = "msg_1", key: bytes = KEY) -> dict[str, str]:
    """The headers a sender makes: HMAC-SHA256 over `id.timestamp.body`, base64, as `v1,<sig>`."""
    digest = hmac.new(key, f"{msg_id}.{at}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def test_the_specifications_vector_verifies() -> None:
    assert verify_webhook(SPEC_HEADERS, SPEC_BODY, SPEC_SECRET, now=1614265330) == {"test": 2432232314}


def test_the_specifications_vector_verifies_with_the_bare_secret_and_a_text_body() -> None:
    bare = SPEC_SECRET.removeprefix("whsec_")

    assert verify_webhook(SPEC_HEADERS, SPEC_BODY.decode(), bare, now=1614265330 + 299) == {"test": 2432232314}


def test_a_delivery_signed_with_the_secret_returns_its_body() -> None:
    headers = {name.title(): value for name, value in signed().items()}  # header names in any case

    assert verify_webhook(headers, BODY, SECRET, now=NOW)["data"]["status"] == "succeeded"


def test_any_matching_v1_signature_is_enough_during_a_rotation() -> None:
    good = signed()["webhook-signature"]
    other = signed(key=b"another key of the previous secret")["webhook-signature"]
    headers = signed() | {"webhook-signature": f"v2,{good[3:]} garbage {other} {good}"}

    assert verify_webhook(headers, BODY, SECRET, now=NOW)["type"] == "job.succeeded"


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        (signed(), BODY + b" ", NOW),  # the body changed after signing
        (signed(msg_id="msg_2") | {"webhook-id": "msg_1"}, BODY, NOW),  # another message's signature
        (signed(key=b"not the key"), BODY, NOW),  # another secret
        (signed() | {"webhook-signature": "v2," + signed()["webhook-signature"][3:]}, BODY, NOW),  # not v1
        (signed(), BODY, NOW + 301),  # too old: a replay
        (signed(), BODY, NOW - 301),  # too new
        (signed() | {"webhook-timestamp": "17e8"}, BODY, NOW),
        ({k: v for k, v in signed().items() if k != "webhook-id"}, BODY, NOW),
        ({k: v for k, v in signed().items() if k != "webhook-signature"}, BODY, NOW),
        (signed(b"not json"), b"not json", NOW),
    ],
    ids=["body", "msg-id", "secret", "version", "old", "new", "timestamp", "no-id", "no-signature", "not-json"],
)
def test_anything_else_is_refused(headers: dict[str, str], body: bytes, now: int) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, SECRET, now=now)


def test_the_tolerance_is_inclusive_and_configurable() -> None:
    assert verify_webhook(signed(), BODY, SECRET, now=NOW + 300)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(signed(), BODY, SECRET, now=NOW + 61, tolerance_s=60)


def test_a_secret_that_is_not_base64_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        verify_webhook(signed(), BODY, "whsec_not base64!", now=NOW)
