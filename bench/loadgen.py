"""WebSocket client processes: open sockets, check every delivery, record latency.

The orchestrator (run.py) drives a WorkerPool. Each worker is a separate
process running picows on uvloop, so the clients are spread over cores and
cost little CPU per frame. A worker takes commands over a multiprocessing pipe:

- connect: open sockets for (user, event types) pairs and wait for each welcome;
- reset: forget counts and latencies, keeping each socket's last event id;
- collect: wait until every socket received the expected events, return figures;
- close: close every socket.

Each socket checks that it gets every published event of its types exactly
once and in increasing id order. An id not above the last one seen counts as
out of order, duplicates included. After the wait, the count and the sum of ids
are compared with what was published.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import multiprocessing.connection
import signal
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, cast

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from processes import raise_open_file_limit

# The two client protocols: notifier's JSON frames (also spoken by the ceiling
# server) and socket.io over the raw Engine.IO 4 WebSocket transport.
NOTIFIER_PROTOCOL = "notifier"
SOCKETIO_PROTOCOL = "socketio"

WELCOME_TIMEOUT = 30.0
CLOSE_TIMEOUT = 10.0
REPLY_POLL_SECONDS = 0.005
# picows allocates this per socket for reading; frames here are a few hundred bytes.
READ_BUFFER_BYTES = 4096
# Frames of one event are byte-identical on every socket, so a worker parses
# each distinct frame once. The cache is emptied when it grows past this size.
PARSED_CACHE_LIMIT = 4096


@dataclass
class SocketTally:
    """Counts of the events one socket received since the last reset."""

    count: int = 0
    id_sum: int = 0
    out_of_order: int = 0


class ClientSocket(WSListener):  # type: ignore[misc]
    def __init__(self, worker: Worker, event_types: tuple[str, ...], user_uuid: str) -> None:
        super().__init__()
        self.worker = worker
        self.event_types = event_types
        self.user_uuid = user_uuid
        self.transport: WSTransport | None = None
        self.welcomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_id = 0
        self.tally = SocketTally()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.worker.on_text(self, transport, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.worker.closing:
            self.worker.unexpected_closes += 1

    def mark_welcomed(self) -> None:
        if not self.welcomed.done():
            self.welcomed.set_result(None)

    def record_event(self, event_id: int) -> None:
        tally = self.tally
        if event_id <= self.last_id:
            tally.out_of_order += 1
            return
        self.last_id = event_id
        tally.count += 1
        tally.id_sum += event_id


@dataclass
class Worker:
    protocol: str = NOTIFIER_PROTOCOL
    sockets: list[ClientSocket] = field(default_factory=list)
    latencies: array = field(default_factory=lambda: array("d"))
    parsed: dict[bytes, tuple[int, float]] = field(default_factory=dict)
    # Per event id: latency of the first and of the last socket in this worker to receive it.
    event_spans: dict[int, list[float]] = field(default_factory=dict)
    first_receive: float = 0.0
    last_receive: float = 0.0
    unexpected_closes: int = 0
    other_frames: int = 0
    closing: bool = False

    # Receiving

    def on_text(self, socket: ClientSocket, transport: WSTransport, payload: bytes) -> None:
        if self.protocol == NOTIFIER_PROTOCOL:
            self.on_notifier_text(socket, payload)
        else:
            self.on_socketio_text(socket, transport, payload)

    def on_notifier_text(self, socket: ClientSocket, payload: bytes) -> None:
        if payload.startswith(b'{"type":"event"'):
            self.on_event(socket, payload, 0)
        elif payload.startswith(b'{"type":"welcome"'):
            socket.mark_welcomed()
        else:
            self.other_frames += 1

    def on_socketio_text(self, socket: ClientSocket, transport: WSTransport, payload: bytes) -> None:
        # Engine.IO packet types: 0 open, 2 ping, 4 message; socket.io packet
        # types inside a message: 0 connect, 2 event, 4 connect error.
        if payload.startswith(b'42["event"'):
            self.on_event(socket, payload, 2)
        elif payload == b"2":
            transport.send(WSMsgType.TEXT, b"3")
        elif payload.startswith(b"0{"):
            transport.send(WSMsgType.TEXT, b"40" + json.dumps({"user": socket.user_uuid}).encode())
        elif payload.startswith(b"40"):
            socket.mark_welcomed()
        else:
            self.other_frames += 1

    def on_event(self, socket: ClientSocket, payload: bytes, json_offset: int) -> None:
        now = time.time()
        parsed = self.parsed.get(payload)
        if parsed is None:
            parsed = parse_event(payload, json_offset)
            if len(self.parsed) >= PARSED_CACHE_LIMIT:
                self.parsed.clear()
            self.parsed[payload] = parsed
        event_id, sent_at = parsed
        socket.record_event(event_id)
        latency = now - sent_at
        self.latencies.append(latency)
        span = self.event_spans.get(event_id)
        if span is None:
            self.event_spans[event_id] = [latency, latency]
        else:
            span[1] = latency
        if not self.first_receive:
            self.first_receive = now
        self.last_receive = now

    # Commands

    async def connect(
        self, protocol: str, ws_base: str, plans: list[tuple[str, tuple[str, ...]]], concurrency: int
    ) -> dict[str, Any]:
        """Open one socket per (user, event types) plan, at most `concurrency` handshakes at a time."""
        self.protocol = protocol
        limit = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def open_one(user_uuid: str, event_types: tuple[str, ...]) -> None:
            async with limit:
                try:
                    await self.open_socket(ws_base, user_uuid, event_types)
                except (TimeoutError, OSError, RuntimeError, ValueError) as error:
                    errors.append(f"{type(error).__name__}: {error}")

        started = time.time()
        await asyncio.gather(*(open_one(user, types) for user, types in plans))
        finished = time.time()
        # The sockets live until `close`; freezing them keeps a full collection from
        # rescanning them all, which would pause this worker and read as server latency.
        gc.collect()
        gc.freeze()
        return {
            "opened": len(plans) - len(errors),
            "failed": len(errors),
            "errors": errors[:5],
            "started": started,
            "finished": finished,
        }

    async def open_socket(self, ws_base: str, user_uuid: str, event_types: tuple[str, ...]) -> None:
        if self.protocol == NOTIFIER_PROTOCOL:
            url = f"{ws_base}/notifications/{user_uuid}"
        else:
            url = f"{ws_base}/socket.io/?EIO=4&transport=websocket"
        _, listener = await ws_connect(
            lambda: ClientSocket(self, event_types, user_uuid),
            url,
            read_buffer_init_size=READ_BUFFER_BYTES,
            websocket_handshake_timeout=WELCOME_TIMEOUT,
        )
        socket = cast(ClientSocket, listener)
        await asyncio.wait_for(socket.welcomed, WELCOME_TIMEOUT)
        self.sockets.append(socket)

    def reset(self) -> dict[str, Any]:
        for socket in self.sockets:
            socket.tally = SocketTally()
        self.latencies = array("d")
        self.event_spans = {}
        self.first_receive = 0.0
        self.last_receive = 0.0
        self.other_frames = 0
        return {"sockets": len(self.sockets)}

    async def collect(self, expected: dict[str, tuple[int, int]], timeout: float) -> dict[str, Any]:
        """Wait up to `timeout` s for every socket's expected (count, id sum), then report.

        `expected` maps an event type to how many events of it were published and the sum of their ids.
        """
        targets = [socket_target(socket.event_types, expected) for socket in self.sockets]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(socket.tally.count >= count for socket, (count, _) in zip(self.sockets, targets, strict=True)):
                break
            await asyncio.sleep(0.02)

        lost = unexpected = wrong_ids = out_of_order = delivered = 0
        for socket, (count, id_sum) in zip(self.sockets, targets, strict=True):
            tally = socket.tally
            delivered += tally.count
            out_of_order += tally.out_of_order
            lost += max(count - tally.count, 0)
            unexpected += max(tally.count - count, 0)
            if tally.count == count and tally.id_sum != id_sum:
                wrong_ids += 1
        return {
            "sockets": len(self.sockets),
            "delivered": delivered,
            "lost": lost,
            "out_of_order": out_of_order,
            "unexpected": unexpected,
            "wrong_ids": wrong_ids,
            "unexpected_closes": self.unexpected_closes,
            "other_frames": self.other_frames,
            "first_receive": self.first_receive,
            "last_receive": self.last_receive,
            "latencies": self.latencies.tobytes(),
            "event_spans": self.event_spans,
        }

    async def close(self) -> dict[str, Any]:
        self.closing = True
        for socket in self.sockets:
            if socket.transport is not None:
                socket.transport.send_close()
                socket.transport.disconnect()
        waits = [socket.closed for socket in self.sockets]
        if waits:
            await asyncio.wait(waits, timeout=CLOSE_TIMEOUT)
        closed = len(self.sockets)
        self.sockets = []
        gc.unfreeze()
        self.closing = False
        self.unexpected_closes = 0
        return {"closed": closed}


def socket_target(event_types: tuple[str, ...], expected: dict[str, tuple[int, int]]) -> tuple[int, int]:
    count = id_sum = 0
    for event_type in event_types:
        type_count, type_sum = expected.get(event_type, (0, 0))
        count += type_count
        id_sum += type_sum
    return count, id_sum


def parse_event(payload: bytes, json_offset: int) -> tuple[int, float]:
    """Return (event id, send time from the payload's "t") of an event frame."""
    document = json.loads(payload[json_offset:])
    event = document["event"] if json_offset == 0 else document[1]
    return int(event["id"]), float(event["payload"]["t"])


async def serve_commands(connection: multiprocessing.connection.Connection) -> None:
    worker = Worker()
    while True:
        # Read in a thread: an event-loop reader would make the pipe non-blocking,
        # and a large reply would then fail with EAGAIN.
        command, arguments = await asyncio.to_thread(connection.recv)
        if command == "exit":
            await worker.close()
            connection.send({"exited": True})
            return
        if command == "connect":
            reply = await worker.connect(**arguments)
        elif command == "reset":
            reply = worker.reset()
        elif command == "collect":
            reply = await worker.collect(**arguments)
        elif command == "close":
            reply = await worker.close()
        else:
            reply = {"error": f"unknown command {command!r}"}
        connection.send(reply)


def worker_main(connection: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process."""
    raise_open_file_limit()
    # A Ctrl-C in the terminal reaches the whole process group. The orchestrator
    # then kills the workers itself, so they ignore the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    uvloop.run(serve_commands(connection))


async def receive(connection: multiprocessing.connection.Connection) -> dict[str, Any]:
    """Wait for a worker's reply by polling, so no thread is left blocked in a read when the loop stops."""
    while not connection.poll():
        await asyncio.sleep(REPLY_POLL_SECONDS)
    return dict(connection.recv())


class WorkerPool:
    """Client worker processes, driven together."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.connections: list[multiprocessing.connection.Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=worker_main, args=(child_end,), daemon=True)
            process.start()
            child_end.close()
            self.connections.append(parent_end)
            self.processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    async def call(
        self, command: str, per_worker: list[dict[str, Any]] | None = None, **shared: Any
    ) -> list[dict[str, Any]]:
        """Send a command to every worker (with its own arguments, if given) and gather the replies."""
        for index, connection in enumerate(self.connections):
            arguments = dict(shared)
            if per_worker is not None:
                arguments.update(per_worker[index])
            connection.send((command, arguments))
        return list(await asyncio.gather(*(receive(connection) for connection in self.connections)))

    async def connect(
        self, protocol: str, ws_base: str, plans: list[tuple[str, tuple[str, ...]]], concurrency: int
    ) -> list[dict[str, Any]]:
        """Split the plans over the workers round-robin and open them all at once."""
        count = len(self.connections)
        shares = [{"plans": plans[index::count]} for index in range(count)]
        per_worker_concurrency = max(1, concurrency // count)
        return await self.call(
            "connect", shares, protocol=protocol, ws_base=ws_base, concurrency=per_worker_concurrency
        )

    def kill(self) -> None:
        """Kill every worker at once, for an interrupted run that cannot wait for replies."""
        for process in self.processes:
            if process.is_alive():
                process.kill()
        for process in self.processes:
            process.join(2)

    async def shutdown(self) -> None:
        try:
            await asyncio.wait_for(self.call("exit"), CLOSE_TIMEOUT * 2)
        except (TimeoutError, EOFError, BrokenPipeError, OSError):
            pass
        for process in self.processes:
            process.join(2)
            if process.is_alive():
                process.kill()
                process.join(2)

