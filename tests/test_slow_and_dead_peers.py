"""Slow consumers are closed with 1013 without delaying others; dead peers are dropped by ping."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket

import pytest

from tests.helpers import OTHER_USER, USER, running_notifier, wait_until


async def open_raw_socket(port: int, user: str) -> socket.socket:
    """Open a WebSocket by hand with a tiny receive buffer, and never read from it afterwards."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /notifications/{user} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(raw, request.encode())
    response = await asyncio.wait_for(loop.sock_recv(raw, 1024), 3)
    assert response.startswith(b"HTTP/1.1 101"), response
    return raw


async def read_until_closed(raw: socket.socket, timeout: float = 15.0) -> bytes:
    """Read everything the server sends until it closes the TCP connection."""
    loop = asyncio.get_running_loop()
    chunks = []

    async def drain() -> None:
        while chunk := await loop.sock_recv(raw, 1 << 20):
            chunks.append(chunk)

    await asyncio.wait_for(drain(), timeout)
    return b"".join(chunks)


@pytest.mark.gen_test(timeout=60)
async def test_slow_consumer_closed_others_unaffected(redis_url, key_prefix, caplog):
    caplog.set_level(logging.WARNING, logger="handlers.notifications")
    async with running_notifier(redis_url, key_prefix, websocket={"max_buffer_bytes": 64 * 1024}) as client:
        await client.subscribe(USER, "bulk")
        await client.subscribe(OTHER_USER, "bulk")
        hub = client.notifier.hub
        stalled = await open_raw_socket(client.notifier.port, USER)
        await wait_until(lambda: hub.socket_count == 1, message="raw socket not attached")
        reader = await client.open_socket(OTHER_USER)
        await reader.welcome()

        # Loopback kernel buffers absorb a few MiB before the server's own buffer fills.
        payload = {"blob": "x" * 50_000}
        published = 0
        while hub.slow_consumers_closed == 0 and published < 600:
            await client.publish("bulk", f"e{published}", payload=payload)
            published += 1
            event = await reader.next_event()
            assert event["event_name"] == f"e{published - 1}"

        await wait_until(lambda: hub.socket_count == 1, message="slow consumer still attached")
        health = json.loads((await client.request("GET", "/healthz")).body)
        last = await client.publish("bulk", "after")
        assert (await reader.next_event())["id"] == last["id"]
        reader.close()
        received = await read_until_closed(stalled)
        stalled.close()

    # The close frame comes last, after everything buffered before it.
    assert received.endswith(b"\x88\x0f" + (1013).to_bytes(2, "big") + b"slow consumer")
    assert hub.slow_consumers_closed == 1
    assert health["slow_consumers_closed"] == 1
    warnings = [r for r in caplog.records if "slow consumer" in r.getMessage()]
    assert len(warnings) == 1
    assert USER in warnings[0].getMessage()


@pytest.mark.gen_test(timeout=30)
async def test_dead_peer_removed_after_ping_timeout(redis_url, key_prefix):
    settings = {"ping_interval": 0.5, "ping_timeout": 0.5}
    async with running_notifier(redis_url, key_prefix, websocket=settings) as client:
        hub = client.notifier.hub
        silent = await open_raw_socket(client.notifier.port, USER)
        await wait_until(lambda: hub.socket_count == 1, message="raw socket not attached")
        started = asyncio.get_running_loop().time()
        await wait_until(lambda: hub.socket_count == 0, timeout=5, message="dead peer still attached")
        elapsed = asyncio.get_running_loop().time() - started
        silent.close()

    # Interval plus timeout, plus a pinger tick (0.125 s here) and scheduling slack.
    assert elapsed < 0.5 + 0.5 + 1.0


@pytest.mark.gen_test(timeout=30)
async def test_live_peer_answers_pings_and_stays(redis_url, key_prefix):
    settings = {"ping_interval": 0.2, "ping_timeout": 0.2}
    async with running_notifier(redis_url, key_prefix, websocket=settings) as client:
        await client.subscribe(USER, "t")
        socket_ = await client.open_socket(USER)
        await socket_.welcome()
        (session,) = client.notifier.hub.sessions_by_user[USER]
        handler = session.socket
        first_due = handler.next_ping_at

        # Several pings went out and their pongs came back, so none is outstanding.
        await wait_until(lambda: handler.next_ping_at > first_due + 0.3, timeout=5, message="no pings sent")
        await wait_until(lambda: handler.ping_sent_at is None, timeout=2, message="pong not received")
        published = await client.publish("t", "still here")
        delivered = await socket_.next_event()
        socket_.close()

    assert delivered == published
