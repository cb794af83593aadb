"""Tencent Cloud SMS `SendSms` simulator (VENDORS.md §9, §11) on the API 3.0 core.

`SmsSim(credentials=..., sdk_app_id=...)` owns a `TencentCloudSim` (as `core`), like Hunyuan3DSim;
`register_sms(core, sdk_app_id=...)` puts the action on a core someone else serves instead. It
simulates the login-code template: `TemplateParamSet` is `[code, minutes]`.

Request-level rules answer `Response.Error`: SmsSdkAppId, TemplateId, the parameter count (2) and
format (the code 0-6 digits, each variable at most 6 characters), PhoneNumberSet (1..200, not mixed
mainland and international), SignName when a mainland number is present. Each number then gets
its own `SendStatusSet` entry: a parse or format failure, the blacklist, the per-number limits
(`per_30s` / `per_hour` rolling windows, `per_day` per natural day in Beijing time, as the SMS
console counts), the package `balance`, or `Ok`. Only `Ok` messages count towards the limits.

Every per-number outcome is kept as a message: `GET /__sim/sms?phone=P` lists them newest first and
`GET /__sim/sms/last?phone=P` answers the last one delivered (`Ok`) — the one place the code is
shown; the call log (`/__sim/calls`) masks it. Admin `/__sim/config|reset|calls|stats` as usual.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from vendors.sim.common import Call, check_non_negative, json_response
from vendors.sim.tencent_cloud import ActionCall, TencentCloudError, TencentCloudSim, TencentProduct

SERVICE: Final = "sms"
VERSION: Final = "2021-01-11"
ACTION: Final = "SendSms"
MAX_NUMBERS: Final = 200
TEMPLATE_PARAMS: Final = 2  # the login template: {1} the code, {2} minutes
PARAM_MAX_CHARS: Final = 6  # new accounts (VENDORS.md §9)
BEIJING_OFFSET_S: Final = 8 * 3600
MASK: Final = "******"
FIELDS: Final[Mapping[str, type]] = {
    "PhoneNumberSet": list, "SmsSdkAppId": str, "TemplateId": str, "SignName": str, "TemplateParamSet": list,
    "ExtendCode": str, "SessionContext": str, "SenderId": str,
}  # fmt: skip
LIMITS: Final = (
    ("per_30s", "LimitExceeded.PhoneNumberThirtySecondLimit", "30 seconds"),
    ("per_hour", "LimitExceeded.PhoneNumberOneHourLimit", "one hour"),
    ("per_day", "LimitExceeded.PhoneNumberDailyLimit", "one day"),
)
"""Knob, the per-number code it answers, the window's name; checked in this order."""

_CODE = re.compile(r"[0-9]{0,6}")
_DIGITS = re.compile(r"\+?[0-9]+")
_MAINLAND = re.compile(r"(?:\+86|0086|86)?(1[0-9]{10})")
_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{5,14}")


@dataclass(frozen=True)
class SmsKnobs:
    """SMS behaviour switches; the API-layer ones (`latency_ms`, `failure_rate`, `failure_kind`,
    `clock_offset_s`, `seed`) live on the core's `TencentCloudKnobs`, and `configure` takes both."""

    per_30s: int = 1  # messages delivered to one number within 30 s
    per_hour: int = 5
    per_day: int = 10  # per natural day, Beijing time
    blacklist: tuple[str, ...] = ()  # numbers in any accepted form -> FailedOperation.PhoneNumberInBlacklist
    balance: int | None = None  # messages left in the SMS package; None = unlimited
    sign_name: str | None = None  # the approved SignName; None accepts any non-empty one
    template_id: str | None = None  # the approved TemplateId; None accepts any

    def __post_init__(self) -> None:
        for name in ("per_30s", "per_hour", "per_day"):
            _check_count(name, getattr(self, name))
        if self.balance is not None:
            _check_count("balance", self.balance)
        if not isinstance(self.blacklist, tuple) or not all(isinstance(n, str) for n in self.blacklist):
            raise ValueError(f"blacklist must be a list of phone numbers, got {self.blacklist!r}")
        for name in ("sign_name", "template_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or null, got {value!r}")


@dataclass(frozen=True)
class SmsMessage:
    """One number's outcome of one SendSms; `status` is its `SendStatusSet` code (`Ok` = delivered)."""

    phone: str  # E.164 when the number parsed, else as sent
    code: str  # TemplateParamSet[0]
    template_params: tuple[str, ...]
    sent_at: float
    status: str

    def to_json(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "template_params": list(self.template_params)}


class SmsSim(TencentProduct[SmsKnobs]):
    """The simulator; see the module docstring. Give `credentials` (own core) or `core` (shared)."""

    def __init__(
        self,
        *,
        sdk_app_id: str,
        credentials: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        core: TencentCloudSim | None = None,
    ) -> None:
        if (credentials is None) == (core is None):
            raise ValueError("give exactly one of credentials (an own core) or core (a shared one)")
        super().__init__(core or TencentCloudSim(credentials=credentials or {}, clock=clock, seed=seed), SmsKnobs())
        self.sdk_app_id = sdk_app_id
        self._messages: list[SmsMessage] = []
        self.core.register(ACTION, self._send, service=SERVICE, version=VERSION)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """`/__sim/sms[/last]`, then the `/__sim/...` admin; everything else is an API 3.0 call."""
        path = request.url.path
        if request.method == "GET" and path in ("/__sim/sms", "/__sim/sms/last"):
            return self._inbox_response(request, last=path.endswith("/last"))
        return super().handle(request)

    # --- Python-side conveniences for tests (the rest come from TencentProduct) -----------------------

    def messages(self, phone: str | None = None) -> list[dict[str, object]]:
        """Every outcome for `phone` (any accepted form; None = all numbers), newest first."""
        return [m.to_json() for m in self._inbox(phone)]

    def last_code(self, phone: str) -> str | None:
        """The code of the last message delivered to `phone`, or None."""
        message = self._last_delivered(phone)
        return message.code if message else None

    @property
    def calls(self) -> list[Call]:
        """The core's call log with each SendSms code masked."""
        return [_masked(call) for call in self.core.calls]

    def _forget(self) -> None:
        """Messages go, so every limit starts afresh."""
        self._messages.clear()

    def stats(self) -> dict[str, object]:
        with self.core.lock:
            statuses = Counter(m.status for m in self._messages)
            return {
                "messages": len(self._messages),
                "delivered": statuses["Ok"],
                "phones": len({m.phone for m in self._messages}),
                "statuses": dict(statuses),
            }

    # --- the inbox ----------------------------------------------------------------------------------

    def _inbox(self, phone: str | None) -> list[SmsMessage]:
        key = None if phone is None else lookup_key(phone)
        with self.core.lock:
            return [m for m in reversed(self._messages) if key is None or m.phone == key]

    def _last_delivered(self, phone: str) -> SmsMessage | None:
        return next((m for m in self._inbox(phone) if m.status == "Ok"), None)

    def _inbox_response(self, request: httpx.Request, *, last: bool) -> httpx.Response:
        phone = request.url.params.get("phone")
        if not last:
            return json_response(self.messages(phone))
        if not phone:
            return json_response({"error": "the query parameter `phone` is required"}, status=400)
        message = self._last_delivered(phone)
        if message is None:
            return json_response({"error": f"no message delivered to {lookup_key(phone)}"}, status=404)
        return json_response(message.to_json())

    # --- the action (called by the core under its lock) ------------------------------------------------

    def _send(self, call: ActionCall) -> Mapping[str, object]:
        params = call.params
        _check_fields(params)
        self._check_app(params)
        numbers = _phone_numbers(params.get("PhoneNumberSet"))
        template_params = _template_params(params.get("TemplateParamSet"))
        parsed = {raw: _parse_or_code(raw) for raw in numbers}
        mainland = {result[1] for result in parsed.values() if isinstance(result, tuple)}
        if len(mainland) > 1:
            raise TencentCloudError(
                "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                "PhoneNumberSet mixes mainland China and international numbers.",
            )
        if True in mainland:
            self._check_sign_name(params.get("SignName"))
        context = str(params.get("SessionContext", ""))
        statuses = [self._deliver(call, raw, result, template_params, context) for raw, result in parsed.items()]
        return {"SendStatusSet": statuses}

    def _check_app(self, params: Mapping[str, object]) -> None:
        app_id, template_id = params.get("SmsSdkAppId"), params.get("TemplateId")
        if not app_id:
            raise TencentCloudError("MissingParameter", "The parameter `SmsSdkAppId` is missing.")
        if app_id != self.sdk_app_id:
            raise TencentCloudError("InvalidParameterValue.SdkAppIdNotExist", "The SdkAppId does not exist.")
        if not template_id:
            raise TencentCloudError("MissingParameter", "The parameter `TemplateId` is missing.")
        if self._knobs.template_id is not None and template_id != self._knobs.template_id:
            raise TencentCloudError(
                "FailedOperation.TemplateIncorrectOrUnapproved", "The template is not approved or does not exist."
            )

    def _check_sign_name(self, sign_name: object) -> None:
        approved = self._knobs.sign_name
        if not sign_name or (approved is not None and sign_name != approved):
            raise TencentCloudError(
                "FailedOperation.SignatureIncorrectOrUnapproved",
                "SignName is required for mainland China numbers and must be an approved signature.",
            )

    def _deliver(
        self,
        call: ActionCall,
        raw: str,
        parsed: tuple[str, bool] | str,
        template_params: tuple[str, ...],
        context: str,
    ) -> dict[str, object]:
        phone, mainland = parsed if isinstance(parsed, tuple) else (raw, False)
        status = parsed if isinstance(parsed, str) else self._refusal(phone, call.now) or "Ok"
        self._messages.append(SmsMessage(phone, template_params[0], template_params, call.now, status))
        delivered = status == "Ok"
        if delivered and self._knobs.balance is not None:
            self._knobs = dataclasses.replace(self._knobs, balance=self._knobs.balance - 1)
        serial = f"{self.core.rng.randrange(1000, 10000)}:{self.core.rng.randrange(10**27, 10**28)}"
        return {
            "SerialNo": serial if delivered else "",
            "PhoneNumber": phone,
            "Fee": 1 if delivered else 0,
            "SessionContext": context,
            "Code": status,
            "Message": "send success" if delivered else _MESSAGES.get(status, status),
            "IsoCode": "CN" if mainland else "",
        }

    def _refusal(self, phone: str, now: float) -> str | None:
        """The per-number code that stops this message, or None when it goes."""
        knobs = self._knobs
        if phone in {lookup_key(number) for number in knobs.blacklist}:
            return "FailedOperation.PhoneNumberInBlacklist"
        sent = [m.sent_at for m in self._messages if m.phone == phone and m.status == "Ok"]
        counts = {
            "per_30s": sum(1 for at in sent if now - at < 30),
            "per_hour": sum(1 for at in sent if now - at < 3600),
            "per_day": sum(1 for at in sent if beijing_day(at) == beijing_day(now)),
        }
        for knob, code, _ in LIMITS:
            if counts[knob] >= getattr(knobs, knob):
                return code
        if knobs.balance is not None and knobs.balance <= 0:
            return "FailedOperation.InsufficientBalanceInSmsPackage"
        return None


def register_sms(core: TencentCloudSim, *, sdk_app_id: str) -> SmsSim:
    """Add `SendSms` to a core another simulator serves; its `handle` routes API calls to that core,
    but `/__sim/sms` only answers on the returned object's `handle`."""
    return SmsSim(sdk_app_id=sdk_app_id, core=core)


# --- numbers ----------------------------------------------------------------------------------------


def parse_number(raw: str) -> tuple[str, bool]:
    """(E.164, mainland?) of a number SendSms accepts: mainland mobiles as bare 11 digits, `86…`,
    `0086…` or `+86…`; others as `+` and 6..15 digits. Raises with the per-number code otherwise."""
    if not _DIGITS.fullmatch(raw):
        raise TencentCloudError("FailedOperation.PhoneNumberParseFail", "The number cannot be parsed as E.164.")
    mainland = _MAINLAND.fullmatch(raw)
    if mainland is not None:
        return "+86" + mainland.group(1), True
    if raw.startswith("+86") or not _INTERNATIONAL.fullmatch(raw):
        raise TencentCloudError("InvalidParameterValue.IncorrectPhoneNumber", "The number is not a valid number.")
    return raw, False


def lookup_key(phone: str) -> str:
    """How `/__sim/sms?phone=` finds a number: any accepted form; a `+` left unencoded in a query
    string arrives as a space and is put back."""
    text = "+" + phone.strip() if phone.startswith(" ") else phone.strip()
    try:
        return parse_number(text)[0]
    except TencentCloudError:
        return text


def beijing_day(at: float) -> int:
    """The natural day (UTC+8) a moment falls in, as a day number."""
    return int((at + BEIJING_OFFSET_S) // 86400)


def _parse_or_code(raw: str) -> tuple[str, bool] | str:
    try:
        return parse_number(raw)
    except TencentCloudError as exc:
        return exc.code


# --- request rules ------------------------------------------------------------------------------------


def _check_fields(params: Mapping[str, object]) -> None:
    for name, value in params.items():
        expected = FIELDS.get(name)
        if expected is None:
            raise TencentCloudError("UnknownParameter", f"The parameter `{name}` is not recognized.")
        if not isinstance(value, expected):
            raise TencentCloudError("InvalidParameter", f"The parameter `{name}` must be a {expected.__name__}.")


def _phone_numbers(value: object) -> list[str]:
    if value is None or value == []:
        raise TencentCloudError("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet is empty.")
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise TencentCloudError("InvalidParameter", "The parameter `PhoneNumberSet` must be a list of strings.")
    if len(value) > MAX_NUMBERS:
        raise TencentCloudError("LimitExceeded.PhoneNumberCountLimit", f"More than {MAX_NUMBERS} numbers.")
    return list(dict.fromkeys(value))


def _template_params(value: object) -> tuple[str, ...]:
    """The login template's variables: the code (0-6 digits), then the minutes; each ≤ 6 characters."""
    params = value if isinstance(value, list) else []
    if not all(isinstance(p, str) for p in params):
        raise TencentCloudError("InvalidParameter", "The parameter `TemplateParamSet` must be a list of strings.")
    if len(params) != TEMPLATE_PARAMS:
        raise TencentCloudError(
            "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
            f"The template takes {TEMPLATE_PARAMS} parameters, {len(params)} given.",
        )
    if not _CODE.fullmatch(params[0]):
        raise TencentCloudError(
            "InvalidParameterValue.TemplateParameterFormatError", "A verification code variable takes 0-6 digits."
        )
    if any(len(p) > PARAM_MAX_CHARS for p in params):
        raise TencentCloudError(
            "InvalidParameterValue.TemplateParameterLengthLimit",
            f"A template variable takes at most {PARAM_MAX_CHARS} characters.",
        )
    return tuple(params)


def _check_count(name: str, value: object) -> None:
    check_non_negative(name, value)
    if not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")


def _masked(call: Call) -> Call:
    """The call with its code (`TemplateParamSet[0]`, or the whole field when malformed) masked."""
    if call.body.get("Action") != ACTION or "TemplateParamSet" not in call.body:
        return call
    params = call.body["TemplateParamSet"]
    masked = [MASK, *params[1:]] if isinstance(params, list) and params else MASK
    return dataclasses.replace(call, body={**call.body, "TemplateParamSet": masked})


_MESSAGES: Final[Mapping[str, str]] = {
    "FailedOperation.PhoneNumberParseFail": "The number cannot be parsed as E.164.",
    "InvalidParameterValue.IncorrectPhoneNumber": "The number is not a valid number.",
    "FailedOperation.PhoneNumberInBlacklist": "The number is in the opt-out list.",
    "FailedOperation.InsufficientBalanceInSmsPackage": "The SMS package balance is insufficient.",
    **{code: f"Too many messages to this number within {window}." for _, code, window in LIMITS},
}
