"""The control channel on which instances tell each other about subscription changes."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from storage.errors import translate_redis_errors
from storage.keys import Keys

# Seconds an acknowledgement list outlives its last write.
ACKNOWLEDGEMENT_TTL = 30


class ControlChannel:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    @translate_redis_errors
    async def publish(self, message: bytes) -> int:
        """Publish a control message; return how many hubs received it."""
        return int(await self._redis.publish(self._keys.control_channel, message))

    @translate_redis_errors
    async def acknowledge(self, token: str, instance_id: str) -> None:
        key = self._keys.acknowledgements(token)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, instance_id)
            pipe.expire(key, ACKNOWLEDGEMENT_TTL)
            await pipe.execute()

    @translate_redis_errors
    async def wait_for_acknowledgements(self, token: str, count: int, timeout: float) -> int:
        """Wait until `count` hubs acknowledged the message or `timeout` seconds passed; return how many did."""
        key = self._keys.acknowledgements(token)
        received = 0
        deadline = time.monotonic() + timeout
        while received < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # BLPOP takes whole or fractional seconds; 0 would block forever.
            popped = await self._redis.blpop([key], timeout=max(remaining, 0.01))
            if popped is None:
                break
            received += 1
        await self._redis.delete(key)
        return received
