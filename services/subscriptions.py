"""Subscribe and unsubscribe users, with the change in force on every instance before returning."""

from __future__ import annotations

import logging
import uuid

from services.control_message import ControlMessage
from services.errors import NotFound
from services.hub import Hub
from storage.control import ControlChannel
from storage.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)

# Seconds to wait for the other instances to apply a change. An instance that
# does not acknowledge in time is hung or gone, and its sockets with it.
PROPAGATION_TIMEOUT = 2.0


class SubscriptionService:
    def __init__(self, store: SubscriptionStore, hub: Hub, control: ControlChannel) -> None:
        self._store = store
        self._hub = hub
        self._control = control

    async def subscribe(self, user_uuid: str, event_type: str) -> bool:
        """Subscribe the user; return False if already subscribed."""
        created = await self._store.add(user_uuid, event_type)
        await self._propagate(user_uuid, event_type, subscribed=True)
        return created

    async def unsubscribe(self, user_uuid: str, event_type: str) -> None:
        """Unsubscribe the user; raise NotFound if there was no such subscription."""
        removed = await self._store.remove(user_uuid, event_type)
        if not removed:
            raise NotFound(
                "subscription_not_found",
                f"user {user_uuid} is not subscribed to event type {event_type!r}",
            )
        await self._propagate(user_uuid, event_type, subscribed=False)

    async def event_types(self, user_uuid: str) -> list[str]:
        return await self._store.event_types(user_uuid)

    async def _propagate(self, user_uuid: str, event_type: str, subscribed: bool) -> None:
        """Apply the change to this instance's sockets, then wait until every other instance has.

        Every hub, this one included, acknowledges the control message, so the
        count PUBLISH returns is the number of acknowledgements to wait for.
        """
        await self._hub.apply_subscription_change(user_uuid, event_type, subscribed)

        message = ControlMessage(self._hub.instance_id, uuid.uuid4().hex, user_uuid, event_type, subscribed)
        receivers = await self._control.publish(message.encode())
        acknowledged = await self._control.wait_for_acknowledgements(message.token, receivers, PROPAGATION_TIMEOUT)
        if acknowledged < receivers:
            log.warning(
                "%d of %d instances did not confirm the subscription change of user %s to %s within %.1f s",
                receivers - acknowledged, receivers, user_uuid, event_type, PROPAGATION_TIMEOUT,
            )
