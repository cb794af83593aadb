"""Account chores for the maintenance pool: login codes by SMS, and the membership sweep.

The code is made here, stored as a keyed hash, and sent; it is never logged and never passes
through the API or a message.
"""

from __future__ import annotations

import secrets

import structlog

from vendors.base import VendorRejected
from vendors.tencent_sms import SmsRateLimited
from workers.broker import actor
from workers.runtime import Runtime

log = structlog.get_logger()
CODE_DIGITS = 6


@actor(queue_name="maintenance", max_retries=3, time_limit=60_000)
def send_login_code(rt: Runtime, phone: str) -> None:
    if rt.sms is None or rt.login is None:
        log.error("sms_not_configured")
        return
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    rt.login.issue(phone, code, now=rt.now(), ttl_s=rt.settings.sms_code_ttl_s)
    try:
        rt.sms.send_code(phone, code, ttl_minutes=max(1, rt.settings.sms_code_ttl_s // 60))
    except SmsRateLimited as exc:
        log.warning("sms_rate_limited", error=exc.code)
    except VendorRejected as exc:  # bad number, template, balance: not worth retrying
        log.error("sms_rejected", error=exc.code)


def sweep_memberships(rt: Runtime) -> int:
    """Expire the unused plan credits of every lapsed membership; how many users lapsed."""
    now = rt.now()
    lapsed = rt.membership.lapsed(now=now)
    for user_id in lapsed:
        rt.membership.lapse_if_due(user_id, now=now)
    if lapsed:
        log.info("memberships_lapsed", users=len(lapsed))
    return len(lapsed)
