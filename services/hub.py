"""The per-process hub: one Redis PubSub connection and the routing table to open sockets.

Delivery promise kept here: every socket receives the events of its subscribed
types in increasing id order, each at most once. Redis runs the publish script
atomically, so events arrive on the one PubSub connection in id order; each
session remembers the last id it sent and drops anything not newer. Whatever
the connection misses while it is down is read back from the event history.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from services.control_message import ControlMessage
from services.timestamps import retention_cutoff
from storage.control import ControlChannel
from storage.errors import UNAVAILABLE_ERRORS, StorageUnavailable
from storage.events import EventStore, ReplaySource
from storage.keys import Keys
from storage.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)

# Seconds to wait for Redis to confirm a SUBSCRIBE before going on without it;
# anything missed meanwhile is read back from history after a reconnect.
CONFIRMATION_TIMEOUT = 2.0
RECONNECT_DELAY_MIN = 0.1
RECONNECT_DELAY_MAX = 5.0

# Close codes sent to sockets (RFC 6455 section 7.4.1): 1001 going away,
# 1012 service restart, 1013 try again later.
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_SERVICE_RESTART = 1012

EVENT_FRAME_HEAD = b'{"type":"event","event":'


class Socket(Protocol):
    """Interface the hub needs of an open WebSocket."""

    def send_frame(self, frame: bytes) -> None:
        """Queue one text frame; the socket closes itself if its buffer is over the limit."""

    def close_socket(self, code: int, reason: str) -> None:
        """Close the socket with a WebSocket close code and reason."""


class Session:
    """One open socket's place in the hub: its user, event types and delivery position."""

    __slots__ = ("socket", "user_uuid", "event_types", "last_id", "pending")

    def __init__(self, socket: Socket, user_uuid: str) -> None:
        self.socket = socket
        self.user_uuid = user_uuid
        # A tuple, not a set: it contains a few types, and at 10,000 sockets the
        # 170 bytes a small set costs more show in memory per idle socket.
        self.event_types: tuple[str, ...] = ()
        self.last_id = 0
        # Live events that arrive while the welcome and replay are being sent;
        # None once the session is live.
        self.pending: list[tuple[int, bytes]] | None = []

    def deliver(self, event_id: int, frame: bytes) -> None:
        if self.pending is not None:
            self.pending.append((event_id, frame))
        elif event_id > self.last_id:
            self.last_id = event_id
            self.socket.send_frame(frame)

    def go_live(self) -> None:
        """Send the live events held back during the replay, then deliver directly."""
        pending, self.pending = self.pending or [], None
        for event_id, frame in pending:
            self.deliver(event_id, frame)


def event_frame(event_json: bytes) -> bytes:
    return EVENT_FRAME_HEAD + event_json + b"}"


def event_id_of(event_json: bytes) -> int:
    """Read the id from event JSON, which always starts with {"id":<id>,"""
    return int(event_json[6:event_json.index(b",", 6)])


class Hub:
    def __init__(
        self,
        pubsub_redis: aioredis.Redis,
        control: ControlChannel,
        keys: Keys,
        events: EventStore,
        subscriptions: SubscriptionStore,
        max_age_seconds: int,
    ) -> None:
        self.instance_id = uuid.uuid4().hex
        self._pubsub_redis = pubsub_redis
        self._control = control
        self._keys = keys
        self._events = events
        self._subscriptions = subscriptions
        self._max_age_seconds = max_age_seconds

        self.routes: dict[str, set[Session]] = {}
        # Lists, not sets, for the same reason: a user has one or a few sockets.
        self.sessions_by_user: dict[str, list[Session]] = {}
        self._pubsub: PubSub | None = None
        self._confirmations: dict[bytes, collections.deque[asyncio.Future[None]]] = {}
        # Event types whose SUBSCRIBE is sent but not yet confirmed, so a second
        # socket routed to the same type waits for the same confirmation.
        self._channels_in_flight: dict[str, asyncio.Future[None]] = {}
        self._recovery_buffer: list[tuple[str, int, bytes]] | None = None
        # Highest event id dispatched; None until the first connection reads it from Redis.
        self._watermark: int | None = None
        self._connected = asyncio.Event()
        self._outage_started: float | None = None
        self._reconnect_delay = RECONNECT_DELAY_MIN
        self._run_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.slow_consumers_closed = 0
        self.connection_attempts = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def socket_count(self) -> int:
        return sum(len(sessions) for sessions in self.sessions_by_user.values())

    # Lifecycle

    async def start(self, timeout: float = 10.0) -> None:
        """Start the reconnect loop and wait until the PubSub connection is ready."""
        self._run_task = asyncio.create_task(self._run(), name="hub")
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self) -> None:
        if self._run_task is not None:
            self._run_task.cancel()
            try:
                await self._run_task
            except asyncio.CancelledError:
                pass
            self._run_task = None
        for task in list(self._background):
            task.cancel()
        await self._close_pubsub()

    async def _run(self) -> None:
        while True:
            try:
                await self._serve_connection()
            except Exception as error:
                self._connected.clear()
                self._release_confirmations()
                await self._close_pubsub()
                if self._outage_started is None:
                    self._outage_started = time.monotonic()
                    if isinstance(error, UNAVAILABLE_ERRORS + (StorageUnavailable, asyncio.TimeoutError)):
                        log.warning("redis pubsub lost, reconnecting with backoff: %s", error)
                    else:
                        log.exception("hub failed unexpectedly, reconnecting with backoff")
                await asyncio.sleep(self._reconnect_delay)
                self._reconnect_delay = min(self._reconnect_delay * 2, RECONNECT_DELAY_MAX)

    def _on_connected(self) -> None:
        self._connected.set()
        self._reconnect_delay = RECONNECT_DELAY_MIN
        if self._outage_started is not None:
            log.info("redis pubsub recovered after %.1f s", time.monotonic() - self._outage_started)
            self._outage_started = None

    async def _serve_connection(self) -> None:
        """Subscribe every needed channel, catch up from history, then read until the connection fails."""
        self.connection_attempts += 1
        self._recovery_buffer = []
        pubsub = self._pubsub_redis.pubsub()
        routed = list(self.routes)
        channels = [self._keys.control_channel] + [self._keys.channel(t) for t in routed]
        waiters = [self._expect_confirmation(channel.encode()) for channel in channels]
        await pubsub.subscribe(*channels)

        # Published only once connected: two tasks connecting one PubSub would
        # each take a connection. Types routed meanwhile are subscribed now.
        self._pubsub = pubsub
        late = [self._keys.channel(t) for t in self.routes if t not in routed]
        if late:
            waiters += [self._expect_confirmation(channel.encode()) for channel in late]
            await pubsub.subscribe(*late)
        reader = asyncio.create_task(self._read(pubsub), name="hub-reader")
        try:
            await self._wait_first(reader, asyncio.gather(*waiters), CONFIRMATION_TIMEOUT * 2)
            await self._catch_up()
            self._on_connected()
            await reader
        finally:
            reader.cancel()
            self._recovery_buffer = None

    @staticmethod
    async def _wait_first(reader: asyncio.Task[None], work: Any, timeout: float) -> None:
        """Await `work`, failing early with the reader's error if the connection drops first."""
        work_task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({reader, work_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            work_task.cancel()
            reader.result()
            raise ConnectionError("pubsub reader stopped")
        if work_task not in done:
            work_task.cancel()
            raise TimeoutError("redis did not confirm the subscriptions")
        work_task.result()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except UNAVAILABLE_ERRORS:
                pass

    # Reading

    async def _read(self, pubsub: PubSub) -> None:
        control = self._keys.control_channel.encode()
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if kind == "message":
                if channel == control:
                    self._on_control(message["data"])
                else:
                    self._on_event(channel, message["data"])
            elif kind == "subscribe":
                waiters = self._confirmations.get(channel)
                if waiters:
                    waiter = waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)

    def _on_event(self, channel: bytes, event_json: bytes) -> None:
        event_type = self._keys.event_type_of(channel.decode())
        if event_type is None:
            return
        event_id = event_id_of(event_json)
        if self._recovery_buffer is not None:
            self._recovery_buffer.append((event_type, event_id, event_json))
            return
        self._dispatch(event_type, event_id, event_frame(event_json))

    def _dispatch(self, event_type: str, event_id: int, frame: bytes) -> None:
        if self._watermark is None or event_id > self._watermark:
            self._watermark = event_id
        sessions = self.routes.get(event_type)
        if not sessions:
            return
        # Copied because a failed send may close a socket and detach its session.
        for session in tuple(sessions):
            session.deliver(event_id, frame)

    async def _catch_up(self) -> None:
        """Deliver what the connection missed, then the events that arrived during the catch-up."""
        watermark = self._watermark
        event_types = list(self.routes)
        if watermark is None:
            self._watermark = await self._events.last_id()
        else:
            source = await self._events.replay_source(event_types, watermark)
            if source.last_id < watermark:
                self._on_history_lost(source.last_id)
            else:
                self._announce_gaps(watermark, source)
                for event in source.events:
                    self._dispatch(event.event_type, event.id, event_frame(event.json))

        buffered, self._recovery_buffer = self._recovery_buffer or [], None
        for event_type, event_id, event_json in buffered:
            self._dispatch(event_type, event_id, event_frame(event_json))

    def _on_history_lost(self, last_id: int) -> None:
        """Close every socket after Redis came back with fewer events than delivered."""
        log.warning(
            "redis came back with event id %d below the %d already delivered; its data was lost, "
            "closing %d sockets so clients resume and learn of the gap",
            last_id, self._watermark, self.socket_count,
        )
        self._watermark = last_id
        for sessions in list(self.sessions_by_user.values()):
            for session in list(sessions):
                session.socket.close_socket(CLOSE_SERVICE_RESTART, "event history lost")

    def _announce_gaps(self, watermark: int, source: ReplaySource) -> None:
        """Tell live sockets of each type that retention removed events the hub missed while away."""
        oldest = source.events[0].id if source.events else None
        notified: set[Session] = set()
        for event_type, trimmed_id in source.trimmed_ids.items():
            if trimmed_id <= watermark:
                continue
            for session in self.routes.get(event_type, ()):
                if session.pending is None and session not in notified:
                    notified.add(session)
                    session.socket.send_frame(gap_frame(session.last_id, oldest))

    # Sockets

    async def attach(self, socket: Socket, user_uuid: str, last_event_id: int | None) -> Session:
        """Register a socket, send its welcome and any replay, and start live delivery.

        Raises StorageUnavailable if Redis cannot be read; the socket is then detached.
        """
        session = Session(socket, user_uuid)
        self.sessions_by_user.setdefault(user_uuid, []).append(session)
        try:
            event_types = await self._subscriptions.event_types(user_uuid)
            await self._route(session, event_types)

            if last_event_id is None:
                last_id = await self._events.last_id()
                session.last_id = last_id
                socket.send_frame(welcome_frame(user_uuid, session.event_types, last_id))
            else:
                await self._replay(session, last_event_id)
        except BaseException:
            self.detach(session)
            raise

        session.go_live()
        return session

    async def _replay(self, session: Session, last_event_id: int) -> None:
        event_types = sorted(session.event_types)
        source = await self._events.replay_source(event_types, last_event_id)
        history_lost = last_event_id > source.last_id
        if history_lost:
            # Redis lost events this client saw; ids restarted below its position.
            source = await self._events.replay_source(event_types, 0)
        cutoff = retention_cutoff(self._max_age_seconds)
        events = [event for event in source.events if event.created_at >= cutoff]
        gap = (
            history_lost
            or source.highest_trimmed_id > last_event_id
            or len(events) < len(source.events)
        )

        session.socket.send_frame(welcome_frame(session.user_uuid, session.event_types, source.last_id))
        if gap:
            session.socket.send_frame(gap_frame(last_event_id, events[0].id if events else None))
        for event in events:
            session.last_id = event.id
            session.socket.send_frame(event_frame(event.json))
        # Every event up to the newest id is now either sent or gone from history.
        session.last_id = max(session.last_id, source.last_id)

    def detach(self, session: Session) -> None:
        sessions = self.sessions_by_user.get(session.user_uuid)
        if sessions is not None and session in sessions:
            sessions.remove(session)
            if not sessions:
                del self.sessions_by_user[session.user_uuid]
        for event_type in list(session.event_types):
            self._unroute(session, event_type)

    def close_all(self, code: int, reason: str) -> None:
        for sessions in list(self.sessions_by_user.values()):
            for session in list(sessions):
                session.socket.close_socket(code, reason)

    # Subscriptions

    async def apply_subscription_change(self, user_uuid: str, event_type: str, subscribed: bool) -> None:
        """Update this process's sockets of the user; return once Redis routes the type here."""
        for session in list(self.sessions_by_user.get(user_uuid, ())):
            if subscribed:
                await self._route(session, [event_type])
            else:
                self._unroute(session, event_type)

    async def _route(self, session: Session, event_types: list[str]) -> None:
        """Route the types to the session; return once Redis has confirmed each type's channel."""
        new_channels = []
        in_flight = []
        for event_type in event_types:
            if event_type in session.event_types:
                continue
            session.event_types += (event_type,)
            sessions = self.routes.setdefault(event_type, set())
            if not sessions:
                new_channels.append(event_type)
            elif event_type in self._channels_in_flight:
                # Another socket's SUBSCRIBE for this type is not confirmed yet.
                in_flight.append(self._channels_in_flight[event_type])
            sessions.add(session)
        if new_channels:
            await self._subscribe_channels(new_channels)
        if in_flight:
            await asyncio.gather(*(asyncio.shield(future) for future in in_flight))

    def _unroute(self, session: Session, event_type: str) -> None:
        session.event_types = tuple(t for t in session.event_types if t != event_type)
        sessions = self.routes.get(event_type)
        if sessions is None:
            return
        sessions.discard(session)
        if not sessions:
            del self.routes[event_type]
            self._spawn(self._unsubscribe_channel(event_type))

    async def _subscribe_channels(self, event_types: list[str]) -> None:
        """Subscribe the types' channels and wait for Redis to confirm.

        Between connections this returns at once, because the next connection
        subscribes every routed type and reads back what was missed. During a
        reconnect the channel is subscribed here, since the reconnect may have
        listed its channels before this type was routed.
        """
        pubsub = self._pubsub
        if pubsub is None:
            return
        channels = [self._keys.channel(event_type) for event_type in event_types]
        waiters = [self._expect_confirmation(channel.encode()) for channel in channels]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for event_type in event_types:
            self._channels_in_flight[event_type] = done
        try:
            await pubsub.subscribe(*channels)
            await asyncio.wait_for(asyncio.gather(*waiters), CONFIRMATION_TIMEOUT)
        except UNAVAILABLE_ERRORS + (asyncio.TimeoutError,) as error:
            log.warning("subscribing %d channels not confirmed, relying on catch-up: %s", len(channels), error)
        finally:
            done.set_result(None)
            for event_type in event_types:
                if self._channels_in_flight.get(event_type) is done:
                    del self._channels_in_flight[event_type]

    async def _unsubscribe_channel(self, event_type: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or event_type in self.routes:
            return
        try:
            await pubsub.unsubscribe(self._keys.channel(event_type))
        except UNAVAILABLE_ERRORS as error:
            log.debug("unsubscribe of %s failed, the reconnect will skip it: %s", event_type, error)

    def _expect_confirmation(self, channel: bytes) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(channel, collections.deque()).append(waiter)
        return waiter

    def _release_confirmations(self) -> None:
        """Unblock requests waiting on a connection that failed; catch-up covers them."""
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._confirmations.clear()

    # Other instances

    def _on_control(self, data: bytes) -> None:
        try:
            message = ControlMessage.decode(data)
        except ValueError:
            log.warning("ignoring malformed control message %r", data[:200])
            return
        self._spawn(self._apply_control(message))

    async def _apply_control(self, message: ControlMessage) -> None:
        if message.origin != self.instance_id:
            await self.apply_subscription_change(message.user_uuid, message.event_type, message.subscribed)
        try:
            await self._control.acknowledge(message.token, self.instance_id)
        except StorageUnavailable as error:
            log.warning("acknowledging subscription change failed: %s", error)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def welcome_frame(user_uuid: str, event_types: tuple[str, ...], last_event_id: int) -> bytes:
    return json.dumps(
        {"type": "welcome", "user_uuid": user_uuid, "event_types": sorted(event_types), "last_event_id": last_event_id},
        separators=(",", ":"),
    ).encode()


def gap_frame(after: int, oldest_available: int | None) -> bytes:
    return json.dumps(
        {"type": "gap", "after": after, "oldest_available": oldest_available}, separators=(",", ":")
    ).encode()

