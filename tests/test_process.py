"""`python notifier.py` as a real process: start-up, a user's session, settings errors, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
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


@pytest.mark.gen_test(timeout=60)
async def test_process_serves_user_session_on_embedded_redis(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "notifier.py"), "--port", str(port)],
        cwd=tmp_path,
        env=notifier_environment(NOTIFIER_REDIS_DATA_DIR=str(tmp_path / "data")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until_healthy(port, process)
        http = AsyncHTTPClient()
        base = f"http://127.0.0.1:{port}"

        subscribed = await http.fetch(f"{base}/subscriptions/{USER}/daily_tasks", method="POST", body=b"")
        socket_connection = await websocket_connect(f"ws://127.0.0.1:{port}/notifications/{USER}")
        welcome = json.loads(await socket_connection.read_message())
        published = await http.fetch(
            f"{base}/events", method="POST",
            body=json.dumps({"event_type": "daily_tasks", "event_name": "daily_task1"}),
        )
        frame = json.loads(await asyncio.wait_for(socket_connection.read_message(), 5))
        history = json.loads((await http.fetch(f"{base}/events/{USER}")).body)

        # SIGTERM closes the open socket with 1001, then the process exits 0.
        process.send_signal(signal.SIGTERM)
        while await asyncio.wait_for(socket_connection.read_message(), 10) is not None:
            pass
        close = (socket_connection.close_code, socket_connection.close_reason)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=20)

    assert subscribed.code == 201
    assert welcome["type"] == "welcome"
    assert welcome["event_types"] == ["daily_tasks"]
    assert published.code == 201
    event = json.loads(published.body)
    assert frame == {"type": "event", "event": event}
    assert history["events"] == [event]
    assert close == (1001, "server shutting down")
    assert process.returncode == 0
    assert f"listening on http://127.0.0.1:{port}" in stderr
    assert "embedded redis" in stderr
    assert "notifier 0.1.0" in stderr
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
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "notifier.py"), "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=notifier_environment(NOTIFIER_REDIS_DATA_DIR=str(tmp_path / "data")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until_healthy(port, process)
        http = AsyncHTTPClient()
        base = f"http://127.0.0.1:{port}"
        await http.fetch(f"{base}/subscriptions/{USER}/t", method="POST", body=b"")
        sockets = [await websocket_connect(f"ws://127.0.0.1:{port}/notifications/{USER}") for _ in range(4)]
        for connection in sockets:
            json.loads(await connection.read_message())
        published = []
        for n in range(6):
            response = await http.fetch(
                f"{base}/events", method="POST", body=json.dumps({"event_type": "t", "event_name": f"e{n}"})
            )
            published.append(json.loads(response.body)["id"])
        received = [
            [json.loads(await asyncio.wait_for(connection.read_message(), 5))["event"]["id"] for _ in published]
            for connection in sockets
        ]
        for connection in sockets:
            connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)

    assert all(ids == published for ids in received)
    assert process.returncode == 0
    worker_pids = {line.split("[")[1].split("]")[0] for line in stderr.splitlines() if "listening on" in line}
    assert len(worker_pids) == 2
    assert "started 2 workers" in stderr


@pytest.mark.gen_test(timeout=60)
async def test_uvloop_event_loop_serves(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "notifier.py"), "--port", str(port)],
        cwd=tmp_path,
        env=notifier_environment(
            NOTIFIER_REDIS_DATA_DIR=str(tmp_path / "data"), NOTIFIER_SERVER_EVENT_LOOP="uvloop"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_until_healthy(port, process)
        http = AsyncHTTPClient()
        base = f"http://127.0.0.1:{port}"
        await http.fetch(f"{base}/subscriptions/{USER}/t", method="POST", body=b"")
        connection = await websocket_connect(f"ws://127.0.0.1:{port}/notifications/{USER}")
        json.loads(await connection.read_message())
        body = json.dumps({"event_type": "t", "event_name": "x"})
        response = await http.fetch(f"{base}/events", method="POST", body=body)
        frame = json.loads(await asyncio.wait_for(connection.read_message(), 5))
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=20)

    assert frame["event"] == json.loads(response.body)
    assert process.returncode == 0
    assert "event loop uvloop" in stderr
