"""The ceiling: the least work a Tornado process can do to fan one event out to every socket.

No Redis, no routing, no storage: sockets live in one set, POST /events assigns
the next id, builds the WebSocket frame once and writes it to every socket with
the same write call notifier uses. It
speaks the same HTTP and WebSocket shapes as notifier, so the load generator
drives both the same way. Settings come from the same environment variables
(NOTIFIER_SERVER_PORT; the Redis ones are ignored).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web
import tornado.websocket

# The ceiling writes with notifier's own socket write, so it stays an upper
# bound for notifier's fan-out rather than a measure of IOStream.write.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from handlers.notifications import encode_text_frame, send_without_queueing  # noqa: E402


class State:
    def __init__(self) -> None:
        self.sockets: set[CeilingSocket] = set()
        self.last_id = 0


class CeilingSocket(tornado.websocket.WebSocketHandler):
    def initialize(self, state: State) -> None:
        self.state = state

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: Any) -> None:
        self.state.sockets.add(self)
        welcome = {"type": "welcome", "user_uuid": args[0], "event_types": [], "last_event_id": self.state.last_id}
        self.write_message(json.dumps(welcome, separators=(",", ":")))

    def on_close(self) -> None:
        self.state.sockets.discard(self)


class EventsHandler(tornado.web.RequestHandler):
    def initialize(self, state: State) -> None:
        self.state = state

    def post(self) -> None:
        body = json.loads(self.request.body)
        self.state.last_id += 1
        event = {"id": self.state.last_id, **body, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        event_json = json.dumps(event, separators=(",", ":")).encode()
        frame = encode_text_frame(b'{"type":"event","event":' + event_json + b"}")
        for socket in tuple(self.state.sockets):
            connection = socket.ws_connection
            if connection is not None and not connection.is_closing():
                send_without_queueing(connection.stream, frame)  # type: ignore[attr-defined]
        self.set_status(201)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(event_json)


class SubscriptionHandler(tornado.web.RequestHandler):
    """Accept subscriptions without storing them: the ceiling sends every event to every socket."""

    def post(self, user_uuid: str, event_type: str) -> None:
        self.set_status(201)
        self.finish({"user_uuid": user_uuid, "event_type": event_type})


class HealthHandler(tornado.web.RequestHandler):
    def initialize(self, state: State) -> None:
        self.state = state

    def get(self) -> None:
        self.finish({"status": "ok", "sockets": len(self.state.sockets)})


def make_application(state: State) -> tornado.web.Application:
    arguments = {"state": state}
    return tornado.web.Application(
        [
            (r"/notifications/([^/]*)", CeilingSocket, arguments),
            (r"/events", EventsHandler, arguments),
            (r"/subscriptions/([^/]*)/([^/]*)", SubscriptionHandler),
            (r"/healthz", HealthHandler, arguments),
        ],
        websocket_ping_interval=20,
        websocket_ping_timeout=20,
    )


async def serve() -> None:
    port = int(os.environ.get("NOTIFIER_SERVER_PORT", "8090"))
    server = tornado.httpserver.HTTPServer(make_application(State()))
    server.listen(port, "127.0.0.1")
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop_requested.set)
    await stop_requested.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(serve())
