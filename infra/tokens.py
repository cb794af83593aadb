"""Platform access tokens shared by every genq process, in Redis with their lifetime."""

from __future__ import annotations

import redis


class RedisTokenCache:
    """`vendors.moderation.TokenCache` in Redis: one fetch serves every worker until it expires."""

    def __init__(self, client: redis.Redis, prefix: str = "genq:tokens:") -> None:
        self._redis = client
        self._prefix = prefix

    def get(self, key: str) -> str | None:
        value = self._redis.get(self._prefix + key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def set(self, key: str, token: str, ttl_s: float) -> None:
        self._redis.set(self._prefix + key, token, px=max(int(ttl_s * 1000), 1))

    def delete(self, key: str) -> None:
        self._redis.delete(self._prefix + key)
