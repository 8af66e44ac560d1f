"""POST and DELETE /subscriptions/{user_uuid}/{event_type}, GET /subscriptions/{user_uuid}."""

from __future__ import annotations

from handlers.base import BaseHandler
from services.validation import validate_event_type, validate_user_uuid


class SubscriptionHandler(BaseHandler):
    async def post(self, user_uuid: str, event_type: str) -> None:
        user_uuid = validate_user_uuid(user_uuid)
        event_type = validate_event_type(event_type)
        created = await self.context.subscriptions.subscribe(user_uuid, event_type)
        self.write_json({"user_uuid": user_uuid, "event_type": event_type}, status=201 if created else 200)

    async def delete(self, user_uuid: str, event_type: str) -> None:
        user_uuid = validate_user_uuid(user_uuid)
        event_type = validate_event_type(event_type)
        await self.context.subscriptions.unsubscribe(user_uuid, event_type)
        self.set_status(204)
        self.finish()


class UserSubscriptionsHandler(BaseHandler):
    async def get(self, user_uuid: str) -> None:
        user_uuid = validate_user_uuid(user_uuid)
        event_types = await self.context.subscriptions.event_types(user_uuid)
        self.write_json({"user_uuid": user_uuid, "event_types": event_types})
