"""The peer: the same notification job done with python-socketio's AsyncServer and AsyncRedisManager.

A socket.io room per event type. POST /subscriptions/{user}/{type} adds the
type to the user's set in Redis; a connecting client names its user in the
socket.io auth payload ({"user": "<uuid>"}) and the connect handler enters the
rooms of the user's types before the connection is acknowledged. POST /events
takes the next id from a Redis counter and emits the event to its room. The
Redis manager publishes it, and every server process (here one) sends it to the
room's sockets. Tornado serves HTTP and the WebSocket transport, as in notifier.

Settings come from notifier's environment variables: NOTIFIER_SERVER_PORT,
NOTIFIER_REDIS_URL and NOTIFIER_REDIS_KEY_PREFIX.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import redis.asyncio as aioredis
import socketio
import tornado.httpserver
import tornado.web


class Peer:
    def __init__(self, redis_url: str, key_prefix: str) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        self.prefix = key_prefix
        manager = socketio.AsyncRedisManager(redis_url, channel=key_prefix + "socketio")
        self.sio = socketio.AsyncServer(async_mode="tornado", client_manager=manager, cors_allowed_origins="*")
        self.sio.on("connect", self.on_connect)
        self.publish_lock = asyncio.Lock()

    def subscriptions_key(self, user_uuid: str) -> str:
        return f"{self.prefix}subs:{user_uuid}"

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> bool:
        user_uuid = (auth or {}).get("user")
        if not isinstance(user_uuid, str):
            return False
        for member in await self.redis.smembers(self.subscriptions_key(user_uuid)):
            event_type = member.decode() if isinstance(member, bytes) else member
            await self.sio.enter_room(sid, event_type)
        return True


class EventsHandler(tornado.web.RequestHandler):
    def initialize(self, peer: Peer) -> None:
        self.peer = peer

    async def post(self) -> None:
        body = json.loads(self.request.body)
        # Without the lock, two requests can take ids in one order and publish in
        # the other. Notifier publishes in id order, so the peer must too, because
        # the clients check that ids arrive in increasing order.
        async with self.peer.publish_lock:
            event_id = await self.peer.redis.incr(self.peer.prefix + "sequence")
            event = {"id": event_id, **body, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
            await self.peer.sio.emit("event", event, room=body["event_type"])
        self.set_status(201)
        self.finish(event)


class SubscriptionHandler(tornado.web.RequestHandler):
    def initialize(self, peer: Peer) -> None:
        self.peer = peer

    async def post(self, user_uuid: str, event_type: str) -> None:
        added = await self.peer.redis.sadd(self.peer.subscriptions_key(user_uuid), event_type)
        self.set_status(201 if added else 200)
        self.finish({"user_uuid": user_uuid, "event_type": event_type})


class HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish({"status": "ok"})


async def serve() -> None:
    port = int(os.environ.get("NOTIFIER_SERVER_PORT", "8091"))
    redis_url = os.environ.get("NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/0")
    peer = Peer(redis_url, os.environ.get("NOTIFIER_REDIS_KEY_PREFIX", "bench:peer:"))
    arguments = {"peer": peer}
    application = tornado.web.Application(
        [
            (r"/socket.io/", socketio.get_tornado_handler(peer.sio)),
            (r"/events", EventsHandler, arguments),
            (r"/subscriptions/([^/]*)/([^/]*)", SubscriptionHandler, arguments),
            (r"/healthz", HealthHandler),
        ]
    )
    server = tornado.httpserver.HTTPServer(application)
    server.listen(port, "127.0.0.1")

    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop_requested.set)
    await stop_requested.wait()
    server.stop()
    await peer.redis.aclose()


if __name__ == "__main__":
    asyncio.run(serve())
