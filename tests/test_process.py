"""`python notifier.py` as a real process: start-up, a user's session, settings errors, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import websocket_connect

from tests.helpers import USER

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def notifier_environment(**variables: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFIER_")}
    environment.update(variables)
    return environment


async def wait_until_healthy(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    client = AsyncHTTPClient()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"notifier exited with {process.returncode}: {process.stderr.read()}")
        try:
            response = await client.fetch(f"http://127.0.0.1:{port}/healthz", raise_error=False, request_timeout=1)
            if response.code == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("notifier did not become healthy in time")


class NotifierProcess:
    """`python notifier.py` in a temporary folder, its embedded Redis data in it too."""

    def __init__(self, tmp_path: Path, *arguments: str, **environment: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.stderr = ""
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "notifier.py"), "--port", str(self.port), *arguments],
            cwd=tmp_path,
            env=notifier_environment(NOTIFIER_REDIS_DATA_DIR=str(tmp_path / "data"), **environment),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def terminate(self) -> int:
        """Send SIGTERM, wait for the exit, keep stderr; return the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            _, self.stderr = await asyncio.to_thread(self.process.communicate, timeout=30)
        return self.process.returncode


@contextlib.asynccontextmanager
async def notifier_process(tmp_path: Path, *arguments: str, **environment: str) -> AsyncIterator[NotifierProcess]:
    """Start notifier as a process, wait until /healthz returns 200, and SIGTERM it afterwards."""
    server = NotifierProcess(tmp_path, *arguments, **environment)
    try:
        await wait_until_healthy(server.port, server.process)
        yield server
    finally:
        await server.terminate()


@pytest.mark.gen_test(timeout=60)
async def test_process_serves_user_session_on_embedded_redis(tmp_path):
    async with notifier_process(tmp_path) as server:
        http = AsyncHTTPClient()
        subscribed = await http.fetch(f"{server.base_url}/subscriptions/{USER}/daily_tasks", method="POST", body=b"")
        socket_connection = await websocket_connect(f"{server.ws_url}/notifications/{USER}")
        welcome = json.loads(await socket_connection.read_message())
        published = await http.fetch(
            f"{server.base_url}/events", method="POST",
            body=json.dumps({"event_type": "daily_tasks", "event_name": "daily_task1"}),
        )
        frame = json.loads(await asyncio.wait_for(socket_connection.read_message(), 5))
        history = json.loads((await http.fetch(f"{server.base_url}/events/{USER}")).body)

        # SIGTERM closes the open socket with 1001, then the process exits 0.
        server.process.send_signal(signal.SIGTERM)
        while await asyncio.wait_for(socket_connection.read_message(), 10) is not None:
            pass
        close = (socket_connection.close_code, socket_connection.close_reason)
        exit_code = await server.terminate()

    assert subscribed.code == 201
    assert welcome["type"] == "welcome"
    assert welcome["event_types"] == ["daily_tasks"]
    assert published.code == 201
    event = json.loads(published.body)
    assert frame == {"type": "event", "event": event}
    assert history["events"] == [event]
    assert close == (1001, "server shutting down")
    assert exit_code == 0
    assert f"listening on http://127.0.0.1:{server.port}" in server.stderr
    assert "embedded redis" in server.stderr
    assert "notifier 0.1.0" in server.stderr
    assert (tmp_path / "data" / "appendonly.aof").exists() or (tmp_path / "data" / "appendonlydir").exists()


@pytest.mark.parametrize(
    "variable, value, key",
    [
        ("NOTIFIER_SERVER_PORT", "not-a-port", "server.port"),
        ("NOTIFIER_SERVER_PORT", "70000", "server.port"),
        ("NOTIFIER_REDIS_URL", "http://example", "redis.url"),
        ("NOTIFIER_EVENTS_HISTORY_SIZE", "0", "events.history_size"),
        ("NOTIFIER_SERVER_COLOUR", "blue", "server.colour"),
        ("NOTIFIER_LOGGING_LEVEL", "LOUD", "logging.level"),
        ("NOTIFIER_SERVER_EVENT_LOOP", "trio", "server.event_loop"),
        ("NOTIFIER_SERVER_WORKERS", "-1", "server.workers"),
        ("NOTIFIER_WEBSOCKET_PING_TIMEOUT", "30", "websocket.ping_timeout"),
    ],
)
def test_invalid_setting_exits_2_naming_key(variable, value, key):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "notifier.py")],
        env=notifier_environment(**{variable: value}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert key in lines[0]


def test_redis_url_password_hidden_in_error():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "notifier.py")],
        env=notifier_environment(NOTIFIER_REDIS_URL="http://user:s3cret@host"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 2
    assert "s3cret" not in completed.stderr


@pytest.mark.gen_test(timeout=60)
async def test_two_workers_share_port_and_redis(tmp_path):
    async with notifier_process(tmp_path, "--workers", "2") as server:
        http = AsyncHTTPClient()
        await http.fetch(f"{server.base_url}/subscriptions/{USER}/t", method="POST", body=b"")
        sockets = [await websocket_connect(f"{server.ws_url}/notifications/{USER}") for _ in range(4)]
        for connection in sockets:
            json.loads(await connection.read_message())
        published = []
        for n in range(6):
            response = await http.fetch(
                f"{server.base_url}/events", method="POST", body=json.dumps({"event_type": "t", "event_name": f"e{n}"})
            )
            published.append(json.loads(response.body)["id"])
        received = [
            [json.loads(await asyncio.wait_for(connection.read_message(), 5))["event"]["id"] for _ in published]
            for connection in sockets
        ]
        for connection in sockets:
            connection.close()
        exit_code = await server.terminate()

    assert all(ids == published for ids in received)
    assert exit_code == 0
    worker_pids = {line.split("[")[1].split("]")[0] for line in server.stderr.splitlines() if "listening on" in line}
    assert len(worker_pids) == 2
    assert "started 2 workers" in server.stderr


@pytest.mark.gen_test(timeout=60)
async def test_uvloop_event_loop_serves(tmp_path):
    async with notifier_process(tmp_path, NOTIFIER_SERVER_EVENT_LOOP="uvloop") as server:
        http = AsyncHTTPClient()
        await http.fetch(f"{server.base_url}/subscriptions/{USER}/t", method="POST", body=b"")
        connection = await websocket_connect(f"{server.ws_url}/notifications/{USER}")
        json.loads(await connection.read_message())
        body = json.dumps({"event_type": "t", "event_name": "x"})
        response = await http.fetch(f"{server.base_url}/events", method="POST", body=body)
        frame = json.loads(await asyncio.wait_for(connection.read_message(), 5))
        connection.close()
        exit_code = await server.terminate()

    assert frame["event"] == json.loads(response.body)
    assert exit_code == 0
    assert "event loop uvloop" in server.stderr
