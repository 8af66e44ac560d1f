"""GET /notifications/{user_uuid}: the WebSocket that pushes a user's events."""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import tornado.iostream
import tornado.websocket

from handlers.base import ApiError, AppContext, JsonErrorMixin
from services.hub import CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN_LATER, Session
from services.validation import parse_non_negative_id, validate_user_uuid
from storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

UNEXPECTED_MESSAGE_FRAME = json.dumps(
    {
        "type": "error",
        "error": {
            "code": "unexpected_message",
            "message": "this socket only sends notifications; use the REST API to subscribe or publish",
        },
    },
    separators=(",", ":"),
).encode()


def encode_text_frame(payload: bytes) -> bytes:
    """Encode an unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class WireFrameCache:
    """Encode a payload as an unmasked, uncompressed WebSocket text frame once for all sockets.

    The hub hands the same bytes object to every socket of an event, so one
    identity check decides whether the previous encoding can be reused.
    """

    def __init__(self) -> None:
        self._payload: bytes | None = None
        self._wire = b""

    def encode(self, payload: bytes) -> bytes:
        if payload is not self._payload:
            self._payload, self._wire = payload, encode_text_frame(payload)
        return self._wire


WIRE_FRAMES = WireFrameCache()


def send_without_queueing(stream: tornado.iostream.IOStream, wire: bytes) -> None:
    """Write bytes to the socket at once when nothing is queued, else queue them on the stream.

    Tornado's IOStream.write copies small writes into its buffer and creates a
    Future per call. With thousands of sockets per event that cost dominates
    fan-out and leaves garbage for the collector, while the kernel usually
    takes the whole frame at once. Bytes the kernel does not take go through
    IOStream.write, so ordering and the buffer limit still hold.
    """
    if stream.closed():
        return
    if not stream.writing() and not isinstance(stream, tornado.iostream.SSLIOStream):
        try:
            sent = stream.socket.send(wire)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # IOStream.write below meets the same error and closes the stream.
        if sent == len(wire):
            return
        if sent:
            wire = wire[sent:]
    stream.write(wire)


class NotificationSocket(JsonErrorMixin, tornado.websocket.WebSocketHandler):
    def initialize(self, context: AppContext) -> None:
        self.context = context
        self.session: Session | None = None
        self.user_uuid = ""
        self.last_event_id: int | None = None
        self._closed = False
        self.ping_sent_at: float | None = None
        self.next_ping_at = 0.0

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Everything that can refuse the socket is checked before the upgrade,
        # so the client gets an HTTP status and a JSON body.
        self.user_uuid = validate_user_uuid(args[0])
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "websocket_required", "this endpoint only accepts WebSocket upgrade requests")
        last_event_id = self.get_query_argument("last_event_id", None)
        if last_event_id is not None:
            self.last_event_id = parse_non_negative_id("last_event_id", last_event_id)
        if self.context.shutting_down:
            raise ApiError(503, "shutting_down", "the server is shutting down, connect to another instance")
        if not self.context.hub.connected:
            raise ApiError(503, "redis_unavailable", "redis is unavailable, try again shortly")
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        """Allow same-origin pages (Tornado checks those first) and the configured origins."""
        if origin.rstrip("/").lower() in (allowed.rstrip("/").lower() for allowed in self.context.allowed_origins):
            return True
        raise ApiError(403, "origin_not_allowed", f"origin {origin!r} may not open sockets on this server")

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if self.context.compression else None

    async def open(self, *args: Any, **kwargs: Any) -> None:
        stream = self._stream()
        if stream is not None:
            stream.max_write_buffer_size = self.context.max_socket_buffer_bytes
        self.context.pinger.add(self)
        try:
            session = await self.context.hub.attach(self, self.user_uuid, self.last_event_id)
        except StorageUnavailable as error:
            log.warning("closing socket of user %s, redis unavailable: %s", self.user_uuid, error)
            self.close_socket(CLOSE_TRY_AGAIN_LATER, "redis unavailable")
            return
        if self._closed:
            self.context.hub.detach(session)
        else:
            self.session = session

    def send_frame(self, frame: bytes) -> None:
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return
        try:
            stream = self._stream()
            if self.context.compression or stream is None:
                connection.write_message(frame)
            else:
                send_without_queueing(stream, WIRE_FRAMES.encode(frame))
        except tornado.iostream.StreamBufferFullError:
            self._close_slow_consumer()
        except (tornado.iostream.StreamClosedError, tornado.websocket.WebSocketClosedError):
            pass

    def _close_slow_consumer(self) -> None:
        self.context.hub.slow_consumers_closed += 1
        log.warning(
            "closing slow consumer: socket of user %s has over %d bytes unsent",
            self.user_uuid, self.context.max_socket_buffer_bytes,
        )
        # Let the close frame join the full buffer; nothing else is queued after it.
        stream = self._stream()
        if stream is not None:
            stream.max_write_buffer_size = None
        self.close_socket(CLOSE_TRY_AGAIN_LATER, "slow consumer")

    def _stream(self) -> tornado.iostream.IOStream | None:
        """Return the TCP stream under the socket, or None before the upgrade.

        The hot path writes prebuilt frames to it directly.
        """
        return getattr(self.ws_connection, "stream", None)

    def close_socket(self, code: int, reason: str) -> None:
        self._detach()
        self.close(code, reason)

    def send_ping(self) -> None:
        try:
            self.ping(b"")
        except tornado.websocket.WebSocketClosedError:
            pass

    def on_pong(self, data: bytes) -> None:
        self.ping_sent_at = None

    def ping_timed_out(self) -> None:
        log.debug("closing socket of user %s: no pong within %.1f s", self.user_uuid, self.context.pinger.timeout)
        self.close_socket(CLOSE_GOING_AWAY, "ping timed out")

    def on_message(self, message: str | bytes) -> None:
        self.send_frame(UNEXPECTED_MESSAGE_FRAME)

    def on_close(self) -> None:
        self._closed = True
        self.context.pinger.discard(self)
        self._detach()

    def _detach(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.context.hub.detach(session)
