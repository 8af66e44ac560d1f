"""Start notifier inside the test's event loop and talk to it as a client would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from notifier import Notifier
from settings import Settings

USER = "6f1c2a9e-3b7d-4e8a-9c0f-1a2b3c4d5e6f"
OTHER_USER = "0b8f4c1e-7d2a-4f6b-8e3c-5a9d1c7e2f40"


def make_settings(redis_url: str, key_prefix: str, **sections: dict[str, Any]) -> Settings:
    """Default settings on a free port, pointed at the test Redis, with section fields overridden."""
    settings = Settings()
    settings = dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, port=0, shutdown_timeout=5.0),
        redis=dataclasses.replace(settings.redis, url=redis_url, key_prefix=key_prefix),
    )
    for section_name, fields in sections.items():
        section = dataclasses.replace(getattr(settings, section_name), **fields)
        settings = dataclasses.replace(settings, **{section_name: section})
    return settings


@contextlib.asynccontextmanager
async def running_notifier(redis_url: str, key_prefix: str, **sections: dict[str, Any]) -> AsyncIterator[Client]:
    notifier = Notifier(make_settings(redis_url, key_prefix, **sections))
    await notifier.start()
    try:
        yield Client(notifier)
    finally:
        await notifier.stop()


class Client:
    """REST and WebSocket calls against one running notifier."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.base_url = f"http://127.0.0.1:{notifier.port}"
        self.ws_url = f"ws://127.0.0.1:{notifier.port}"
        self._http = AsyncHTTPClient()

    async def request(self, method: str, path: str, body: bytes | str | None = None, **kwargs: Any) -> HTTPResponse:
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        return await self._http.fetch(
            self.base_url + path, method=method, body=body, raise_error=False,
            allow_nonstandard_methods=True, **kwargs,
        )

    async def subscribe(self, user: str, event_type: str) -> HTTPResponse:
        response = await self.request("POST", f"/subscriptions/{user}/{event_type}")
        assert response.code in (200, 201), response.body
        return response

    async def publish(self, event_type: str, event_name: str, **extra: Any) -> dict[str, Any]:
        body = json.dumps({"event_type": event_type, "event_name": event_name, **extra})
        response = await self.request("POST", "/events", body)
        assert response.code == 201, response.body
        return json.loads(response.body)

    async def open_socket(self, user: str, query: str = "") -> Socket:
        connection = await websocket_connect(f"{self.ws_url}/notifications/{user}{query}")
        return Socket(connection)


class Socket:
    """A client WebSocket whose reads fail after a timeout instead of hanging the test."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        self.connection = connection

    async def next_frame(self, timeout: float = 3.0) -> dict[str, Any]:
        message = await asyncio.wait_for(self.connection.read_message(), timeout)
        if message is None:
            raise ConnectionError(
                f"socket closed: {self.connection.close_code} {self.connection.close_reason}"
            )
        return json.loads(message)

    async def welcome(self) -> dict[str, Any]:
        frame = await self.next_frame()
        assert frame["type"] == "welcome", frame
        return frame

    async def next_event(self, timeout: float = 3.0) -> dict[str, Any]:
        frame = await self.next_frame(timeout)
        assert frame["type"] == "event", frame
        return frame["event"]

    async def assert_silent(self, timeout: float = 0.3) -> None:
        """Fail if a frame arrives within `timeout` seconds."""
        try:
            frame = await self.next_frame(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    async def closed(self, timeout: float = 3.0) -> tuple[int | None, str | None]:
        """Read until the server closes the socket; return the close code and reason."""
        async def drain() -> None:
            while await self.connection.read_message() is not None:
                pass
        await asyncio.wait_for(drain(), timeout)
        return self.connection.close_code, self.connection.close_reason

    def close(self) -> None:
        self.connection.close()


async def wait_until(condition: Any, timeout: float = 5.0, interval: float = 0.02, message: str = "") -> None:
    """Poll an (async or plain) condition until it is true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {message or condition}")
        await asyncio.sleep(interval)
