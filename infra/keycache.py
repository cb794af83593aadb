"""A process's memory of API-key lookups, so a request does not always cost a database round trip.

Bounded in time: an entry is trusted for `ttl_s` from just before the lookup that made it, so a key
revoked (or a user disabled) by another process is refused here within `ttl_s`. Bounded in size:
the least recently used entry goes first. Only found keys are kept, so a new key works at once.
`forget_user` makes this process refuse a user's keys from the next request on; a lookup that was
already under way when it ran is answered but not kept (it may have read the row before the change).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from infra.accounts import KeyOwner, hash_key

Lookup = Callable[[str], KeyOwner | None]


class KeyCache:
    def __init__(
        self,
        lookup: Lookup,
        *,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup, self._ttl_s, self._max, self._clock = lookup, ttl_s, max_entries, clock
        self._entries: OrderedDict[str, tuple[float, KeyOwner]] = OrderedDict()  # digest -> (expires, owner)
        self._lock = threading.Lock()
        self._forgets = 0  # bumped by forget_user: a lookup that overlapped one is not kept

    def owner(self, api_key: str) -> KeyOwner | None:
        """Who holds this live key, from memory when looked up less than `ttl_s` ago (0: never kept)."""
        digest, now = hash_key(api_key), self._clock()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None and now < entry[0]:
                self._entries.move_to_end(digest)
                return entry[1]
            self._entries.pop(digest, None)
            seen = self._forgets
        found = self._lookup(api_key)
        if found is not None and self._ttl_s > 0:
            self._keep(digest, found, expires=now + self._ttl_s, seen=seen)
        return found

    def forget_user(self, user_id: str) -> None:
        """Drop every key of the user: call it after the revocation or disabling is committed."""
        with self._lock:
            self._forgets += 1
            for digest in [d for d, (_, owner) in self._entries.items() if owner.user_id == user_id]:
                del self._entries[digest]

    def __len__(self) -> int:
        return len(self._entries)

    def _keep(self, digest: str, found: KeyOwner, *, expires: float, seen: int) -> None:
        with self._lock:
            if seen != self._forgets:
                return
            self._entries[digest] = (expires, found)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
