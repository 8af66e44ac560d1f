"""Chaos run: three notifier processes on one Redis, resuming clients, and failures on a timeline.

While a publisher posts events, the run restarts Redis, SIGKILLs and restarts an
instance, kills the hub PubSub connections and freezes a client until the server
closes it as a slow consumer. At the end every client must hold exactly the
stored events of its types after its first welcome, each once, in id order.

    .venv/bin/python -m tests.chaos --duration 300     # a longer run than the test's

Everything runs on 127.0.0.1 with servers this script starts and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
EVENT_TYPES = ["alpha", "beta", "gamma", "delta"]
KEY_PREFIX = "chaos:"
# Small enough that a client frozen for a few seconds overflows it.
MAX_BUFFER_BYTES = 64 * 1024
PAYLOAD = {"filler": "x" * 2000}
BURST_PAYLOAD = {"filler": "y" * 50_000}
BURST_EVENTS = 120


@dataclass
class ClientState:
    user: str
    event_types: list[str]
    baseline: int | None = None
    last_id: int | None = None
    received: list[int] = field(default_factory=list)
    gaps: int = 0
    connections: int = 0
    frozen_until: float = 0.0


@dataclass
class ChaosReport:
    accepted: int
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int
    unexpected: int
    accepted_not_stored: int
    gaps: int
    reconnects: int
    slow_consumers_closed: int
    actions: list[str]

    def summary(self) -> str:
        return (
            f"accepted={self.accepted} delivered={self.delivered} lost={self.lost} "
            f"duplicated={self.duplicated} out_of_order={self.out_of_order} unexpected={self.unexpected} "
            f"accepted_not_stored={self.accepted_not_stored} gaps={self.gaps} reconnects={self.reconnects} "
            f"slow_consumers_closed={self.slow_consumers_closed}"
        )


class Instance:
    """One `python notifier.py` process on a fixed loopback port."""

    def __init__(self, redis_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.redis_url = redis_url
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.slow_consumers_closed = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFIER_")}
        environment.update(
            NOTIFIER_REDIS_URL=self.redis_url,
            NOTIFIER_REDIS_KEY_PREFIX=KEY_PREFIX,
            NOTIFIER_SERVER_PORT=str(self.port),
            NOTIFIER_EVENTS_HISTORY_SIZE="1000000",
            NOTIFIER_WEBSOCKET_MAX_BUFFER_BYTES=str(MAX_BUFFER_BYTES),
            NOTIFIER_WEBSOCKET_PING_INTERVAL="5",
            NOTIFIER_WEBSOCKET_PING_TIMEOUT="5",
            NOTIFIER_SERVER_SHUTDOWN_TIMEOUT="3",
        )
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "notifier.py")], env=environment, stdout=log_file, stderr=log_file
            )

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    async def healthy(self, http: AsyncHTTPClient) -> bool:
        try:
            response = await http.fetch(f"http://127.0.0.1:{self.port}/healthz", request_timeout=1)
        except (HTTPClientError, OSError):
            return False
        self.slow_consumers_closed = json.loads(response.body)["slow_consumers_closed"]
        return True

    async def wait_healthy(self, http: AsyncHTTPClient, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.healthy(http):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"instance on port {self.port} not healthy after {timeout} s")


class Chaos:
    def __init__(self, work_dir: Path, duration: float, clients: int, events: int, seed: int) -> None:
        self.random = random.Random(seed)
        self.duration = duration
        self.event_budget = events
        self.redis = RedisServer(work_dir / "redis")
        self.instances = [Instance(self.redis.url, work_dir / f"notifier-{n}.log") for n in range(3)]
        self.clients = [
            ClientState(
                user=f"{n:08x}-0000-4000-8000-{self.random.getrandbits(48):012x}",
                event_types=self.random.sample(EVENT_TYPES, self.random.randint(1, 3)),
            )
            for n in range(clients)
        ]
        self.accepted: list[int] = []
        self.actions: list[str] = []
        self.http = AsyncHTTPClient(max_clients=20)
        self.publishing = True
        self.stop_clients = False
        self.slow_consumers_closed = 0

    def live_instances(self) -> list[Instance]:
        return [instance for instance in self.instances if instance.alive]

    # Participants

    async def run_client(self, state: ClientState) -> None:
        while not self.stop_clients:
            instance = self.random.choice(self.live_instances() or self.instances)
            query = "" if state.last_id is None else f"?last_event_id={state.last_id}"
            url = f"ws://127.0.0.1:{instance.port}/notifications/{state.user}{query}"
            try:
                # A small receive buffer lets a frozen client back up into the server quickly.
                raw = socket.socket()
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                raw.setblocking(False)
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", instance.port)), 3)
                async with websockets.connect(
                    url, sock=raw, open_timeout=3, max_queue=4, ping_interval=None
                ) as connection:
                    state.connections += 1
                    await self.read_frames(state, connection)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                pass
            await asyncio.sleep(0.05 + self.random.random() * 0.2)

    async def read_frames(self, state: ClientState, connection: websockets.ClientConnection) -> None:
        while not self.stop_clients:
            try:
                message = await asyncio.wait_for(connection.recv(), 0.5)
            except TimeoutError:
                continue
            frame = json.loads(message)
            if frame["type"] == "welcome":
                if state.baseline is None:
                    state.baseline = state.last_id = frame["last_event_id"]
            elif frame["type"] == "event":
                state.received.append(frame["event"]["id"])
                state.last_id = frame["event"]["id"]
            elif frame["type"] == "gap":
                state.gaps += 1
            # A frozen client stops reading; the server must close it, not buffer without end.
            while time.monotonic() < state.frozen_until:
                await asyncio.sleep(0.1)

    async def publish(self) -> None:
        interval = self.duration / self.event_budget
        sequence = 0

        async def post_one(number: int) -> None:
            instance = self.random.choice(self.live_instances() or self.instances)
            body = json.dumps(
                {"event_type": self.random.choice(EVENT_TYPES), "event_name": f"chaos {number}", "payload": PAYLOAD}
            )
            try:
                response = await self.http.fetch(
                    f"http://127.0.0.1:{instance.port}/events", method="POST", body=body, request_timeout=5
                )
            except (HTTPClientError, OSError):
                return  # not accepted: 503 while Redis is away, or the instance died
            self.accepted.append(json.loads(response.body)["id"])

        pending: set[asyncio.Future[None]] = set()
        started = time.monotonic()
        while sequence < self.event_budget and time.monotonic() - started < self.duration:
            task = asyncio.ensure_future(post_one(sequence))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sequence += 1
            await asyncio.sleep(interval)
        await asyncio.gather(*pending)

    # Failures

    async def timeline(self) -> None:
        steps = [
            (0.12, self.kill_pubsub_connections),
            (0.25, self.kill_and_restart_instance),
            (0.45, self.restart_redis),
            (0.60, self.freeze_client),
            (0.85, self.kill_pubsub_connections),
        ]
        started = time.monotonic()
        for fraction, action in steps:
            await asyncio.sleep(max(0.0, started + fraction * self.duration - time.monotonic()))
            await action()

    async def kill_pubsub_connections(self) -> None:
        with contextlib.closing(self.redis.client()) as admin:
            killed = admin.client_kill_filter(_type="pubsub")
        self.actions.append(f"killed {killed} pubsub connections")

    async def kill_and_restart_instance(self) -> None:
        victim = self.instances[1]
        victim.kill()
        self.actions.append(f"SIGKILLed instance on port {victim.port}")
        await asyncio.sleep(min(3.0, self.duration * 0.05))
        victim.start()
        await victim.wait_healthy(self.http)
        self.actions.append(f"restarted instance on port {victim.port}")

    async def restart_redis(self) -> None:
        await asyncio.to_thread(self.redis.restart)
        self.actions.append("restarted redis")

    async def freeze_client(self) -> None:
        state = max(self.clients, key=lambda client: len(client.event_types))
        state.frozen_until = time.monotonic() + min(8.0, self.duration * 0.15)
        self.actions.append(f"froze client {state.user} reading {len(state.event_types)} types")

        # Kernel buffers on loopback take a few MiB, so send a burst of large
        # events of the frozen client's type to back it up into the server.
        instance = self.random.choice(self.live_instances())
        body = json.dumps({"event_type": state.event_types[0], "event_name": "burst", "payload": BURST_PAYLOAD})
        for _ in range(BURST_EVENTS):
            if time.monotonic() > state.frozen_until:
                break
            try:
                response = await self.http.fetch(
                    f"http://127.0.0.1:{instance.port}/events", method="POST", body=body, request_timeout=5
                )
            except (HTTPClientError, OSError):
                continue
            self.accepted.append(json.loads(response.body)["id"])

    # Run and verify

    async def run(self) -> ChaosReport:
        client_tasks: list[asyncio.Future[None]] = []
        self.redis.start()
        for instance in self.instances:
            instance.start()
        try:
            for instance in self.instances:
                await instance.wait_healthy(self.http)
            await self.subscribe_clients()
            client_tasks += [asyncio.ensure_future(self.run_client(state)) for state in self.clients]
            await self.wait_for(lambda: all(state.baseline is not None for state in self.clients), 20)

            await asyncio.gather(self.publish(), self.timeline())
            for instance in self.instances:
                await instance.wait_healthy(self.http)
            stored = self.stored_ids()
            await self.wait_for(lambda: self.caught_up(stored), 30)
            self.stop_clients = True
            await asyncio.wait_for(asyncio.gather(*client_tasks), 10)
            for instance in self.instances:
                await instance.healthy(self.http)
            return self.report(stored)
        finally:
            self.stop_clients = True
            for task in client_tasks:
                task.cancel()
            for instance in self.instances:
                instance.stop()
            self.redis.kill()

    async def subscribe_clients(self) -> None:
        base = f"http://127.0.0.1:{self.instances[0].port}"
        for state in self.clients:
            for event_type in state.event_types:
                await self.http.fetch(f"{base}/subscriptions/{state.user}/{event_type}", method="POST", body=b"")

    @staticmethod
    async def wait_for(condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    def stored_ids(self) -> dict[str, list[int]]:
        with contextlib.closing(self.redis.client()) as client:
            return {
                event_type: [int(score) for _, score in client.zrange(f"{KEY_PREFIX}events:{event_type}", 0, -1,
                                                                       withscores=True)]
                for event_type in EVENT_TYPES
            }

    def expected_ids(self, state: ClientState, stored: dict[str, list[int]]) -> list[int]:
        baseline = state.baseline or 0
        return sorted(event_id for t in state.event_types for event_id in stored[t] if event_id > baseline)

    def caught_up(self, stored: dict[str, list[int]]) -> bool:
        for state in self.clients:
            expected = self.expected_ids(state, stored)
            if expected and (state.last_id or 0) < expected[-1]:
                return False
        return True

    def report(self, stored: dict[str, list[int]]) -> ChaosReport:
        all_stored = {event_id for ids in stored.values() for event_id in ids}
        lost = duplicated = out_of_order = unexpected = 0
        for state in self.clients:
            expected = set(self.expected_ids(state, stored))
            received = state.received
            lost += len(expected - set(received))
            duplicated += len(received) - len(set(received))
            out_of_order += sum(1 for before, after in zip(received, received[1:], strict=False) if after <= before)
            unexpected += len(set(received) - expected)
        return ChaosReport(
            accepted=len(self.accepted),
            delivered=sum(len(state.received) for state in self.clients),
            lost=lost,
            duplicated=duplicated,
            out_of_order=out_of_order,
            unexpected=unexpected,
            accepted_not_stored=len(set(self.accepted) - all_stored),
            gaps=sum(state.gaps for state in self.clients),
            reconnects=sum(state.connections - 1 for state in self.clients),
            slow_consumers_closed=sum(instance.slow_consumers_closed for instance in self.instances),
            actions=self.actions,
        )


def run_chaos(duration: float = 40.0, clients: int = 20, events: int = 3000, seed: int = 1) -> ChaosReport:
    with tempfile.TemporaryDirectory(prefix="notifier-chaos-") as work_dir:
        chaos = Chaos(Path(work_dir), duration, clients, events, seed)
        try:
            return asyncio.run(chaos.run())
        except BaseException:
            for log_path in sorted(Path(work_dir).glob("notifier-*.log")):
                sys.stderr.write(f"--- {log_path.name}\n{log_path.read_text()[-3000:]}\n")
            raise


def main() -> int:
    parser = argparse.ArgumentParser(description="Run notifier's chaos test and print what was lost.")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of publishing (default 40)")
    parser.add_argument("--clients", type=int, default=20, help="resuming WebSocket clients (default 20)")
    parser.add_argument("--events", type=int, default=3000, help="events to publish at most (default 3000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    arguments = parser.parse_args()
    report = run_chaos(arguments.duration, arguments.clients, arguments.events, arguments.seed)
    for action in report.actions:
        print("action:", action)
    print(report.summary())
    failed = report.lost or report.duplicated or report.out_of_order or report.accepted_not_stored
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
