"""Phone login: one-time SMS codes (stored as keyed hashes, short-lived) and the JWTs they earn."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import Engine, insert, update

from infra.db import sms_codes

ALGORITHM = "HS256"


class LoginCodes:
    def __init__(self, engine: Engine, secret: str) -> None:
        self._engine = engine
        self._secret = secret.encode()

    def _digest(self, phone: str, code: str) -> str:
        return hmac.new(self._secret, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()

    def issue(self, phone: str, code: str, *, now: datetime, ttl_s: int) -> None:
        row = {"phone": phone, "code_hash": self._digest(phone, code), "created_at": now}
        with self._engine.begin() as conn:
            conn.execute(insert(sms_codes).values(**row, expires_at=now + timedelta(seconds=ttl_s)))

    def consume(self, phone: str, code: str, *, now: datetime) -> bool:
        """True once for a live, unused code sent to this phone; a used or expired one is refused."""
        match = (
            update(sms_codes)
            .where(
                sms_codes.c.phone == phone,
                sms_codes.c.code_hash == self._digest(phone, code),
                sms_codes.c.consumed_at.is_(None),
                sms_codes.c.expires_at > now,
            )
            .values(consumed_at=now)
            .returning(sms_codes.c.id)
        )
        with self._engine.begin() as conn:
            return conn.execute(match).first() is not None


class TokenInvalid(Exception):
    pass


@dataclass(frozen=True)
class Claims:
    user_id: str
    role: str
    kind: str  # access | refresh


class Tokens:
    """HS256 JWTs: short-lived access tokens, longer refresh tokens (PyJWT)."""

    def __init__(self, secret: str, *, access_ttl_s: int, refresh_ttl_s: int) -> None:
        if len(secret) < 32:
            raise ValueError("JWT_SECRET must be at least 32 characters")
        self._secret = secret
        self._ttl = {"access": access_ttl_s, "refresh": refresh_ttl_s}

    def issue(self, user_id: str, role: str, kind: str, *, now: datetime) -> str:
        claims = {
            "sub": user_id,
            "role": role,
            "typ": kind,
            "iat": now,
            "exp": now + timedelta(seconds=self._ttl[kind]),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def read(self, token: str, kind: str) -> Claims:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.PyJWTError as exc:
            raise TokenInvalid(type(exc).__name__) from None
        if claims.get("typ") != kind:
            raise TokenInvalid(f"not an {kind} token")
        return Claims(str(claims["sub"]), str(claims.get("role", "user")), kind)

    def ttl(self, kind: str) -> int:
        return self._ttl[kind]
