"""GET /healthz, for load balancers: 200 only while Redis responds and the hub's PubSub connection is up."""

from __future__ import annotations

from handlers.base import ApiError, BaseHandler


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        hub = self.context.hub
        if self.context.shutting_down:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        await self.context.events.ping()
        if not hub.connected:
            raise ApiError(503, "redis_unavailable", "the hub's redis pubsub connection is down")
        self.write_json(
            {"status": "ok", "sockets": hub.socket_count, "slow_consumers_closed": hub.slow_consumers_closed}
        )
