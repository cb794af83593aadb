"""`/v1/keys`: a user's API keys, made, listed (last four characters only) and revoked by their owner.

A key is shown once, when made; genq keeps only its digest. Each API process keeps a looked-up
key for KEY_CACHE_TTL_S (5 s): a revoked key is refused at once by the process that revoked it,
and by every other process within that time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api import docs
from api.auth import CurrentUser
from api.inputs import Url
from api.jobs import webhook_of
from domain.errors import NotFound
from infra.accounts import ApiKey
from infra.paging import is_id
from infra.resources import Resources


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    """Optional: the webhook every job submitted with this key delivers to, unless the job names
    its own (a public address, as for a job's `webhook_url`)."""

    webhook_url: Url | None = None
    webhook_events: Literal["completed", "all"] | None = None


class KeyOut(msgspec.Struct):
    id: str
    last4: str
    created_at: datetime
    revoked_at: datetime | None = None
    webhook_url: str | None = None
    webhook_events: str | None = None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(key.id, key.last4, key.created_at, key.revoked_at, key.webhook_url, key.webhook_events)


class NewKeyOut(msgspec.Struct):
    id: str
    api_key: str  # shown this once
    last4: str
    created_at: datetime
    webhook_url: str | None = None
    webhook_events: str | None = None


class KeysController(Controller):
    path = "/v1/keys"
    tags = ["keys"]

    @post("/", status_code=201, sync_to_thread=True, responses=docs.errors(401))
    def create_key(
        self,
        user: NamedDependency[CurrentUser],
        resources: NamedDependency[Resources],
        data: JSONBody[KeyIn | None] = None,
    ) -> NewKeyOut:
        """A new API key for you; the key itself is in this answer only. With a `webhook_url`, the jobs
        it submits deliver their events there unless they name their own."""
        body = data or KeyIn()
        hook = webhook_of(resources, body.webhook_url, body.webhook_events)
        key, secret = resources.accounts.create_key(user.id, now=datetime.now(UTC), webhook=hook)
        return NewKeyOut(key.id, secret, key.last4, key.created_at, key.webhook_url, key.webhook_events)

    @get("/", sync_to_thread=True, responses=docs.errors(401))
    def list_keys(self, user: NamedDependency[CurrentUser], resources: NamedDependency[Resources]) -> list[KeyOut]:
        """Your keys, oldest first, revoked ones included; never a key itself."""
        return [KeyOut.of(key) for key in resources.accounts.keys(user.id)]

    @delete("/{key_id:str}", status_code=204, sync_to_thread=True, responses=docs.errors(401, 404))
    def revoke_key(
        self, key_id: FromPath[str], user: NamedDependency[CurrentUser], resources: NamedDependency[Resources]
    ) -> None:
        """Revoke one of your keys: refused at once here, and by every API process within KEY_CACHE_TTL_S."""
        if not (is_id(key_id) and resources.accounts.revoke_key(key_id, now=datetime.now(UTC), user_id=user.id)):
            raise NotFound(f"no live key {key_id} of yours", key_id=key_id)
        resources.key_cache.forget_user(user.id)  # refused here at once; elsewhere within key_cache_ttl_s
