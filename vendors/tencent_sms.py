"""Tencent Cloud SMS `SendSms` (VENDORS.md §9): login codes, one number per call.

Signing and the envelope are `vendors.tencent_cloud`'s; this module knows the action, its fields and
its codes. A call can succeed while the message was not sent: each number's outcome is its
`SendStatusSet[].Code` (`Ok` = sent), so a non-Ok code raises exactly as a call error would.

Buckets (`SMS_BUCKETS`, VENDORS.md §10): the per-number and per-app frequency limits raise
`SmsRateLimited` — a `VendorRejected`, so never retried; the caller tells the user to wait.
`InternalError*` and `RequestLimitExceeded*` are transient; template, parameter, phone, blacklist
and balance codes are permanent (balance and template codes are an ops alert). The SMS console's
limits are per number, so SMS has no capacity (`VendorBusy`) bucket.

The SecretKey and the code never appear in exception text: the core scrubs the key, and every
error raised here has the code masked out of its detail. Nothing here logs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Final

import httpx

from vendors.base import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
from vendors.tencent_cloud import TencentClient, bucket_for

VENDOR: Final = "tencent_sms"
SERVICE: Final = "sms"
API_VERSION: Final = "2021-01-11"
ACTION: Final = "SendSms"
MASK: Final = "******"


class SmsRateLimited(VendorRejected):
    """A frequency limit (this number's 30 s / 1 h / day, or the app's): tell the user to wait.

    Never retried. `retry_after_s` is an upper bound on the wait when the code implies one.
    """

    def __init__(self, vendor: str, code: str, detail: str = "") -> None:
        super().__init__(vendor, code, detail)
        self.retry_after_s = WAIT_S.get(code.removeprefix("tencent_"))


SMS_BUCKETS: Final[Mapping[str, type[VendorError]]] = {
    "LimitExceeded.PhoneNumber*": SmsRateLimited,  # ThirtySecond, OneHour, Daily, SameContentDaily
    "LimitExceeded.PhoneNumberCountLimit": VendorRejected,  # > 200 numbers in one call: our bug
    "LimitExceeded.DeliveryFrequencyLimit": SmsRateLimited,
    "LimitExceeded.AppDailyLimit": SmsRateLimited,
    "LimitExceeded.AppMainlandChinaDailyLimit": SmsRateLimited,
    "LimitExceeded.AppGlobalDailyLimit": SmsRateLimited,
    "LimitExceeded.AppCountryOrRegionDailyLimit": SmsRateLimited,
    "LimitExceeded.DailyLimit": SmsRateLimited,
    "LimitExceeded*": VendorRejected,  # e.g. AppCountryOrRegionInBlacklist
    "InternalError*": VendorUnavailable,
    "RequestLimitExceeded*": VendorUnavailable,
    "ServiceUnavailable*": VendorUnavailable,
    "AuthFailure.SignatureExpire": VendorUnavailable,  # clock skew: the next call is signed afresh
    "FailedOperation*": VendorRejected,  # InsufficientBalanceInSmsPackage, PhoneNumberInBlacklist, templates
    "InvalidParameter*": VendorRejected,  # IncorrectPhoneNumber, TemplateParameter*, SdkAppIdNotExist
    "MissingParameter*": VendorRejected,
    "UnknownParameter*": VendorRejected,
    "UnsupportedOperation*": VendorRejected,
    "UnauthorizedOperation*": VendorRejected,
    "AuthFailure*": VendorRejected,
}
"""`Code` pattern -> bucket, for call errors and per-number codes alike (`vendors.tencent_cloud.bucket_for`
rules: longest pattern wins, unlisted is permanent)."""

WAIT_S: Final[Mapping[str, int]] = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600,
    "LimitExceeded.PhoneNumberDailyLimit": 86400,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": 86400,
    "LimitExceeded.AppDailyLimit": 86400,
    "LimitExceeded.AppMainlandChinaDailyLimit": 86400,
    "LimitExceeded.AppGlobalDailyLimit": 86400,
    "LimitExceeded.AppCountryOrRegionDailyLimit": 86400,
    "LimitExceeded.DailyLimit": 86400,
}
"""The longest a limit can still hold after it answered (a day limit lifts at the next day at the latest)."""

_SPACING = re.compile(r"[\s()-]")
_MAINLAND = re.compile(r"(?:\+86|0086|86)?(1[0-9]{10})")
_E164 = re.compile(r"\+[1-9][0-9]{5,14}")
_CODE = re.compile(r"[0-9]{4,6}")
_STATUS_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")


def normalize_phone(phone: str) -> str | None:
    """E.164: a mainland mobile as bare 11 digits, `86…`, `0086…` or `+86…` becomes `+86…`; another
    `+…` number is kept. Spaces, dashes and brackets are ignored. None when it is neither."""
    compact = _SPACING.sub("", phone)
    mainland = _MAINLAND.fullmatch(compact)
    if mainland is not None:
        return "+86" + mainland.group(1)
    return compact if _E164.fullmatch(compact) else None


class SmsClient(TencentClient):
    """Sends login codes through one approved template: `{1}` the code, `{2}` its lifetime in minutes."""

    name = VENDOR
    service = SERVICE
    version = API_VERSION
    buckets = SMS_BUCKETS

    def __init__(
        self,
        http: httpx.Client,
        *,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_name: str,
        template_id: str,
        region: str = "ap-guangzhou",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(http, secret_id=secret_id, secret_key=secret_key, region=region, clock=clock)
        self._app = {"SmsSdkAppId": sdk_app_id, "TemplateId": template_id, "SignName": sign_name}

    def __repr__(self) -> str:
        return f"SmsClient({self._api!r}, sdk_app_id={self._app['SmsSdkAppId']!r})"

    def send_code(self, phone: str, code: str, *, ttl_minutes: int) -> None:
        """Send `code` (4 to 6 digits: shorter ones are guessable) to `phone`; return once Tencent
        accepted it for that number, else raise.

        `SmsRateLimited`: wait (never retry). `VendorUnavailable`: transient. `VendorRejected` with
        code `invalid_phone` / `invalid_request` is a local check; nothing was sent.
        """
        number = normalize_phone(phone)
        if number is None:
            raise VendorRejected(VENDOR, "invalid_phone", "not a mainland mobile or an E.164 number")
        if not _CODE.fullmatch(code):
            raise VendorRejected(VENDOR, "invalid_request", "the code must be 4 to 6 digits")
        if isinstance(ttl_minutes, bool) or not isinstance(ttl_minutes, int) or not 0 < ttl_minutes < 10**6:
            raise VendorRejected(VENDOR, "invalid_request", "ttl_minutes must be a whole number within 1..999999")
        params = {**self._app, "PhoneNumberSet": [number], "TemplateParamSet": [code, str(ttl_minutes)]}
        try:
            fields = self._api.call(ACTION, params)
        except VendorError as exc:
            if code in str(exc):
                raise _masked(exc, code) from None
            raise
        self._check_status(fields, number, code)

    def _check_status(self, fields: Mapping[str, object], number: str, code: str) -> None:
        """The number's own outcome: `Ok`, or raise by the same bucket table as call errors."""
        entries = fields.get("SendStatusSet")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise VendorProtocolError(VENDOR, "missing_SendStatusSet", f"SendStatusSet={type(entries).__name__}")
        mine = [e for e in entries if e.get("PhoneNumber") == number] or entries[:1]
        status, message = mine[0].get("Code"), mine[0].get("Message")
        if status == "Ok":
            return
        if not isinstance(status, str) or not _STATUS_CODE.fullmatch(status):
            raise VendorProtocolError(VENDOR, "bad_SendStatus", f"Code={type(status).__name__}")
        detail = (message if isinstance(message, str) else "").replace(code, MASK)[:300]
        raise bucket_for(status, SMS_BUCKETS)(VENDOR, f"tencent_{status}", detail)


def _masked(exc: VendorError, code: str) -> VendorError:
    """The same error with the code masked out of its detail (a vendor message may echo parameters)."""
    detail = exc.detail.replace(code, MASK)
    if isinstance(exc, VendorUnavailable):
        return VendorUnavailable(exc.vendor, exc.code, detail, retry_after_ms=exc.retry_after_ms)
    return type(exc)(exc.vendor, exc.code, detail)
