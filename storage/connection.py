"""Create the Redis clients notifier uses."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

# One quick retry lets a command go through on a fresh connection when the
# pooled one was broken by a Redis restart. A longer outage fails fast with 503.
COMMAND_RETRY = Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1)


def command_client(url: str) -> aioredis.Redis:
    """Return a pooled client for request-driven commands, with short timeouts."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=COMMAND_RETRY,
        health_check_interval=30,
    )


def pubsub_client(url: str) -> aioredis.Redis:
    """Return a client for the hub's PubSub connection, which blocks on reads without a timeout."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(), retries=0),
    )
