"""Accept events and read a user's event history."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from services.errors import InvalidInput
from services.timestamps import format_timestamp, retention_cutoff
from services.validation import NewEvent
from storage.events import EventStore, StoredEvent
from storage.subscriptions import SubscriptionStore


def encode_event_tail(new_event: NewEvent, created_at: str) -> bytes:
    """Encode the event's JSON after its id, once for storage and every delivery.

    created_at comes last, because storage reads an event's age from its final
    bytes. Raises InvalidInput for lone surrogates, which JSON may escape
    ("\\ud800") but no UTF-8 frame can carry.
    """
    fields: dict[str, object] = {"event_type": new_event.event_type, "event_name": new_event.event_name}
    if new_event.payload is not None:
        fields["payload"] = new_event.payload
    fields["created_at"] = created_at
    try:
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[1:].encode()
    except UnicodeEncodeError:
        raise InvalidInput(
            "invalid_field", "fields 'event_name' and 'payload' must not contain lone surrogates"
        ) from None


@dataclass(frozen=True)
class EventPage:
    events: list[StoredEvent]
    # Newest first: the id to pass as ?before= for older events, or None.
    # Oldest first: the id to pass as ?after= to poll for newer events.
    next_cursor: int | None


class EventService:
    def __init__(self, store: EventStore, subscriptions: SubscriptionStore, max_age_seconds: int) -> None:
        self._store = store
        self._subscriptions = subscriptions
        self._max_age_seconds = max_age_seconds

    async def publish(self, new_event: NewEvent) -> StoredEvent:
        """Store the event and publish it to every instance; raise StorageUnavailable if Redis did not confirm."""
        now = time.time()
        tail = encode_event_tail(new_event, format_timestamp(now))
        return await self._store.append(
            new_event.event_type, tail, retention_cutoff(self._max_age_seconds, now), token=uuid.uuid4().hex
        )

    async def newest(self, user_uuid: str, limit: int, before: int | None) -> EventPage:
        """Return the user's events newest first, older than `before` when given."""
        event_types = await self._subscriptions.event_types(user_uuid)
        if not event_types:
            return EventPage([], None)
        cutoff = retention_cutoff(self._max_age_seconds)
        candidates = await self._store.newest(event_types, before, limit + 1)
        events = [event for event in candidates if event.created_at >= cutoff]
        if len(events) > limit:
            return EventPage(events[:limit], events[limit - 1].id)
        return EventPage(events, None)

    async def oldest_after(self, user_uuid: str, limit: int, after: int) -> EventPage:
        """Return the user's events with ids above `after`, oldest first."""
        event_types = await self._subscriptions.event_types(user_uuid)
        if not event_types:
            return EventPage([], after)
        cutoff = retention_cutoff(self._max_age_seconds)
        considered = (await self._store.oldest_after(event_types, after, limit))[:limit]
        events = [event for event in considered if event.created_at >= cutoff]
        # The cursor passes expired events too, so a poll never stalls on them.
        return EventPage(events, considered[-1].id if considered else after)

    async def ping(self) -> None:
        """Raise StorageUnavailable unless Redis responds to PING."""
        await self._store.ping()
