"""Event history per event type, the global event id, and publishing to PubSub.

Each event type's history is a sorted set scored by event id, whose members are
the event's JSON exactly as clients receive it. The JSON always ends with
`"created_at":"YYYY-MM-DDTHH:MM:SS.mmmZ"}`, so the age of a member can be read
from its last 26 bytes without parsing it, in Python and in Lua alike.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import redis.asyncio as aioredis

from storage.errors import translate_redis_errors
from storage.keys import Keys

# Seconds a publish token is remembered, so a retried publish is not stored twice.
PUBLISH_TOKEN_TTL = 30

# Atomically: assign the next id, store the event, apply retention, publish.
# Running all of it in one script makes the order of ids the order of delivery
# on every PubSub connection. KEYS: sequence, history, trimmed id, publish token.
# ARGV: channel, event JSON after the id, history size, cutoff timestamp, token TTL.
PUBLISH_SCRIPT = """
local existing = redis.call('GET', KEYS[4])
if existing then
  return tonumber(existing)
end

local id = redis.call('INCR', KEYS[1])
local event = '{"id":' .. string.format('%d', id) .. ',' .. ARGV[2]
redis.call('ZADD', KEYS[2], id, event)

local trimmed = 0
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local last = redis.call('ZRANGE', KEYS[2], excess - 1, excess - 1, 'WITHSCORES')
  trimmed = tonumber(last[2])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
end

-- Drop expired events from the head, a few per publish so no call runs long.
for _ = 1, 16 do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #oldest == 0 or string.sub(oldest[1], -26, -3) >= ARGV[4] then
    break
  end
  trimmed = tonumber(oldest[2])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, 0)
end

if trimmed > 0 and trimmed > tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[3], string.format('%d', trimmed))
end

redis.call('SET', KEYS[4], string.format('%d', id), 'EX', ARGV[5])
redis.call('PUBLISH', ARGV[1], event)
return id
"""


@dataclass(frozen=True)
class StoredEvent:
    id: int
    event_type: str
    json: bytes

    @property
    def created_at(self) -> str:
        return self.json[-26:-2].decode()


@dataclass(frozen=True)
class ReplaySource:
    """Retained events after an id, with the newest id and the highest id retention removed."""

    events: list[StoredEvent]
    last_id: int
    trimmed_ids: dict[str, int]

    @property
    def highest_trimmed_id(self) -> int:
        return max(self.trimmed_ids.values(), default=0)


class EventStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, history_size: int) -> None:
        self._redis = redis
        self._keys = keys
        self._history_size = history_size
        self._publish = redis.register_script(PUBLISH_SCRIPT)

    @translate_redis_errors
    async def append(self, event_type: str, tail: bytes, cutoff: str, token: str) -> StoredEvent:
        """Store and publish an event, returning it with its new id.

        `tail` is the event's JSON after the id, from the first field's name to
        the closing brace, and must end with the created_at field. Events of
        the same type created before `cutoff` are removed. A second call with
        the same token within PUBLISH_TOKEN_TTL seconds returns the first
        call's id without storing again.
        """
        event_id = await self._publish(
            keys=[
                self._keys.sequence,
                self._keys.events(event_type),
                self._keys.trimmed(event_type),
                self._keys.publish_token(token),
            ],
            args=[
                self._keys.channel(event_type),
                tail,
                self._history_size,
                cutoff,
                PUBLISH_TOKEN_TTL,
            ],
        )
        return StoredEvent(int(event_id), event_type, b'{"id":%d,' % int(event_id) + tail)

    @translate_redis_errors
    async def last_id(self) -> int:
        """Return the newest id the deployment has assigned, 0 if none."""
        value = await self._redis.get(self._keys.sequence)
        return int(value) if value is not None else 0

    @translate_redis_errors
    async def newest(
        self, event_types: list[str], before: int | None, count: int
    ) -> list[StoredEvent]:
        """Return up to `count` events per type with id below `before`, merged newest first."""
        upper = f"({before}" if before is not None else "+inf"
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_type in event_types:
                pipe.zrevrangebyscore(
                    self._keys.events(event_type), upper, "-inf", start=0, num=count, withscores=True
                )
            results = await pipe.execute()
        return _merge(event_types, results, newest_first=True)

    @translate_redis_errors
    async def oldest_after(self, event_types: list[str], after: int, count: int) -> list[StoredEvent]:
        """Return up to `count` events per type with id above `after`, merged oldest first."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_type in event_types:
                pipe.zrangebyscore(
                    self._keys.events(event_type), f"({after}", "+inf", start=0, num=count, withscores=True
                )
            results = await pipe.execute()
        return _merge(event_types, results, newest_first=False)

    @translate_redis_errors
    async def replay_source(self, event_types: list[str], after: int) -> ReplaySource:
        """Read every retained event after `after`, the newest id and the highest trimmed id.

        The newest id is read first, so every event of these types up to it is
        either in the result or was removed by retention.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.sequence)
            for event_type in event_types:
                pipe.get(self._keys.trimmed(event_type))
            for event_type in event_types:
                pipe.zrangebyscore(self._keys.events(event_type), f"({after}", "+inf", withscores=True)
            results = await pipe.execute()

        last_id = int(results[0] or 0)
        trimmed = [int(value or 0) for value in results[1:1 + len(event_types)]]
        events = _merge(event_types, results[1 + len(event_types):], newest_first=False)
        return ReplaySource(events, last_id, dict(zip(event_types, trimmed, strict=True)))

    @translate_redis_errors
    async def ping(self) -> None:
        await self._redis.ping()


def _merge(
    event_types: list[str], results: list[list[tuple[bytes, float]]], newest_first: bool
) -> list[StoredEvent]:
    """Merge per-type (member, score) rows, each already sorted, into one list by id."""
    streams = [
        [StoredEvent(int(score), event_type, member) for member, score in rows]
        for event_type, rows in zip(event_types, results, strict=True)
    ]
    if newest_first:
        return list(heapq.merge(*streams, key=lambda event: -event.id))
    return list(heapq.merge(*streams, key=lambda event: event.id))
