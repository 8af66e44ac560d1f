"""POST /events and GET /events/{user_uuid}."""

from __future__ import annotations

import json

from handlers.base import ApiError, BaseHandler
from services.validation import (
    parse_limit,
    parse_new_event,
    parse_non_negative_id,
    parse_positive_id,
    validate_user_uuid,
)

DEFAULT_LIMIT = 100


class EventsHandler(BaseHandler):
    async def post(self) -> None:
        # The body is read as JSON whatever the Content-Type: plain `curl -d` sends a form type.
        new_event = parse_new_event(self.read_body())
        event = await self.context.events.publish(new_event)
        self.write_raw_json(event.json, status=201)


class UserEventsHandler(BaseHandler):
    async def get(self, user_uuid: str) -> None:
        user_uuid = validate_user_uuid(user_uuid)
        limit_argument = self.get_query_argument("limit", None)
        limit = DEFAULT_LIMIT if limit_argument is None else parse_limit(limit_argument)
        before = self.get_query_argument("before", None)
        after = self.get_query_argument("after", None)
        if before is not None and after is not None:
            raise ApiError(400, "invalid_query", "use either 'before' or 'after', not both")

        head = b'{"user_uuid":' + json.dumps(user_uuid).encode() + b',"events":['
        if after is not None:
            page = await self.context.events.oldest_after(user_uuid, limit, parse_non_negative_id("after", after))
            cursor_name = b"next_after"
        else:
            before_id = None if before is None else parse_positive_id("before", before)
            page = await self.context.events.newest(user_uuid, limit, before_id)
            cursor_name = b"next_before"
        cursor = b"null" if page.next_cursor is None else str(page.next_cursor).encode()
        body = head + b",".join(event.json for event in page.events) + b'],"' + cursor_name + b'":' + cursor + b"}"
        self.write_raw_json(body)
