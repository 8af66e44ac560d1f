"""REST side of the load: subscribe users and publish events through POST /events, as a backend would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


class PublishError(RuntimeError):
    """A POST the server did not accept."""


@dataclass
class PublishLog:
    """The events a phase published: (id, event type) as the server returned them, and timing."""

    events: list[tuple[int, str]] = field(default_factory=list)
    first_send: float = 0.0
    last_ack: float = 0.0
    late_sends: int = 0

    def expected(self) -> dict[str, tuple[int, int]]:
        """Return, per event type, how many events were published and the sum of their ids."""
        totals: dict[str, tuple[int, int]] = {}
        for event_id, event_type in self.events:
            count, id_sum = totals.get(event_type, (0, 0))
            totals[event_type] = (count + 1, id_sum + event_id)
        return totals


class Publisher:
    def __init__(self, base_url: str, concurrency: int = 8) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency), timeout=REQUEST_TIMEOUT
        )

    async def close(self) -> None:
        await self.session.close()

    async def subscribe(self, pairs: Sequence[tuple[str, str]], concurrency: int = 32) -> None:
        """POST /subscriptions/{user}/{type} for every pair, `concurrency` at a time."""
        limit = asyncio.Semaphore(concurrency)

        async def subscribe_one(user_uuid: str, event_type: str) -> None:
            async with limit:
                url = f"{self.base_url}/subscriptions/{user_uuid}/{event_type}"
                async with self.session.post(url) as response:
                    if response.status not in (200, 201):
                        raise PublishError(f"POST {url} returned {response.status}: {await response.text()}")

        await asyncio.gather(*(subscribe_one(user, event_type) for user, event_type in pairs))

    async def publish_one(self, event_type: str, log: PublishLog) -> None:
        """POST one event whose payload carries its send time, and log its id."""
        sent_at = time.time()
        body = json.dumps({"event_type": event_type, "event_name": "bench", "payload": {"t": sent_at}})
        if not log.first_send:
            log.first_send = sent_at
        async with self.session.post(f"{self.base_url}/events", data=body) as response:
            text = await response.text()
            if response.status != 201:
                raise PublishError(f"POST /events returned {response.status}: {text}")
        log.events.append((int(json.loads(text)["id"]), event_type))
        log.last_ack = time.time()

    async def publish_burst(self, event_types: Sequence[str], count: int, in_flight: int) -> PublishLog:
        """Publish `count` events as fast as the server accepts them, cycling through the types."""
        log = PublishLog()
        limit = asyncio.Semaphore(in_flight)

        async def publish_limited(event_type: str) -> None:
            async with limit:
                await self.publish_one(event_type, log)

        await asyncio.gather(*(publish_limited(event_types[i % len(event_types)]) for i in range(count)))
        return log

    async def publish_paced(
        self, event_types: Sequence[str], rate: float, duration: float, in_flight: int
    ) -> PublishLog:
        """Publish at `rate` events/s for `duration` s on a fixed schedule (open loop).

        A send is late when `in_flight` requests are already waiting. It still
        goes out, so a server that falls behind shows growing latency.
        `late_sends` counts how often the schedule was not kept.
        """
        log = PublishLog()
        # At least a few events, so a slow server's low rates still give a distribution.
        count = max(5, round(rate * duration))
        pending: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        for index in range(count):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= in_flight:
                log.late_sends += 1
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            task = asyncio.create_task(self.publish_one(event_types[index % len(event_types)], log))
            pending.add(task)
        for task in pending:
            await task
        return log
