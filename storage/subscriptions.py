"""Each user's set of subscribed event types."""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.errors import translate_redis_errors
from storage.keys import Keys


class SubscriptionStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    @translate_redis_errors
    async def add(self, user_uuid: str, event_type: str) -> bool:
        """Subscribe the user; return False if the subscription already existed."""
        added = await self._redis.sadd(self._keys.subscriptions(user_uuid), event_type)
        return bool(added)

    @translate_redis_errors
    async def remove(self, user_uuid: str, event_type: str) -> bool:
        """Unsubscribe the user; return False if there was no such subscription."""
        removed = await self._redis.srem(self._keys.subscriptions(user_uuid), event_type)
        return bool(removed)

    @translate_redis_errors
    async def event_types(self, user_uuid: str) -> list[str]:
        """Return the user's event types, sorted."""
        members = await self._redis.smembers(self._keys.subscriptions(user_uuid))
        return sorted(member.decode() if isinstance(member, bytes) else member for member in members)
