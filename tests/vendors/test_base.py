"""`transport_error`: which transport errors may have reached the vendor."""

from __future__ import annotations

import httpx
import pytest

from vendors.base import VendorError, VendorOutcomeUnknown, VendorUnavailable, transport_error

NOT_SENT = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol, httpx.ProxyError]
MAYBE_SENT = [
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.CloseError,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,  # h11 raises it for a body longer than declared, after sending it
]
REQUEST = httpx.Request("POST", "https://vendor.example/submit")


@pytest.mark.parametrize("exc_type", NOT_SENT)
def test_a_submit_that_never_left_us_is_unavailable(exc_type: type[httpx.TransportError]) -> None:
    error = transport_error("v", exc_type("x", request=REQUEST), creates=True)

    assert type(error) is VendorUnavailable
    assert error.code == "transport"


@pytest.mark.parametrize("exc_type", MAYBE_SENT)
def test_a_submit_that_may_have_reached_the_vendor_is_outcome_unknown(exc_type: type[httpx.TransportError]) -> None:
    error = transport_error("v", exc_type("x", request=REQUEST), creates=True)

    assert type(error) is VendorOutcomeUnknown
    assert error.code == "outcome_unknown"


@pytest.mark.parametrize("exc_type", NOT_SENT + MAYBE_SENT)
def test_a_call_that_creates_nothing_is_unavailable_whatever_the_error(exc_type: type[httpx.TransportError]) -> None:
    error = transport_error("v", exc_type("x", request=REQUEST), creates=False)

    assert type(error) is VendorUnavailable


def test_outcome_unknown_is_a_vendor_error_that_retry_code_does_not_catch() -> None:
    assert issubclass(VendorOutcomeUnknown, VendorError)
    assert not issubclass(VendorOutcomeUnknown, VendorUnavailable)


def test_the_detail_names_the_error_and_is_scrubbed() -> None:
    exc = httpx.ReadTimeout("timed out for key sk-secret", request=REQUEST)

    error = transport_error("v", exc, creates=True, scrub=lambda text: text.replace("sk-secret", "****"))

    assert error.detail == "ReadTimeout: timed out for key ****"
