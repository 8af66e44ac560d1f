"""Redis restarts, killed PubSub connections and outages, on a private redis-server."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.helpers import USER, running_notifier, wait_until


async def healthz_code(client) -> int:
    return (await client.request("GET", "/healthz")).code


@pytest.mark.gen_test(timeout=60)
async def test_publish_while_redis_down_is_503(private_redis, key_prefix):
    async with running_notifier(private_redis.url, key_prefix) as client:
        await client.subscribe(USER, "a")
        private_redis.stop()
        publish = await client.request("POST", "/events", json.dumps({"event_type": "a", "event_name": "x"}))
        subscribe = await client.request("POST", f"/subscriptions/{USER}/b")
        listing = await client.request("GET", f"/subscriptions/{USER}")
        private_redis.start()
        await wait_until(lambda: _is_healthy(client), timeout=15)
        recovered = await client.request("POST", "/events", json.dumps({"event_type": "a", "event_name": "y"}))

    for response in (publish, subscribe, listing):
        assert response.code == 503
        assert json.loads(response.body)["error"]["code"] == "redis_unavailable"
    assert recovered.code == 201


async def _is_healthy(client) -> bool:
    return await healthz_code(client) == 200


@pytest.mark.gen_test(timeout=60)
async def test_healthz_503_while_redis_away(private_redis, key_prefix):
    async with running_notifier(private_redis.url, key_prefix) as client:
        assert await healthz_code(client) == 200
        private_redis.stop()

        async def unhealthy() -> bool:
            return await healthz_code(client) == 503

        await wait_until(unhealthy, timeout=5)
        private_redis.start()
        await wait_until(lambda: _is_healthy(client), timeout=15)


@pytest.mark.gen_test(timeout=60)
async def test_socket_survives_redis_restart_without_loss(private_redis, key_prefix):
    async with running_notifier(private_redis.url, key_prefix) as client:
        await client.subscribe(USER, "a")
        socket = await client.open_socket(USER)
        await socket.welcome()
        before = await client.publish("a", "before restart")
        assert await socket.next_event() == before

        private_redis.restart()
        # Publish as soon as Redis takes writes, possibly before the hub resubscribed:
        # those events must come from history, in order, once.
        published = []
        for n in range(20):
            response = await client.request("POST", "/events", json.dumps({"event_type": "a", "event_name": f"e{n}"}))
            if response.code == 201:
                published.append(json.loads(response.body))
        await wait_until(lambda: _is_healthy(client), timeout=15)
        published.append(await client.publish("a", "after recovery"))
        received = [await socket.next_event(timeout=10) for _ in published]
        await socket.assert_silent()
        socket.close()

    assert len(published) >= 2
    assert received == published


@pytest.mark.gen_test(timeout=60)
async def test_killed_pubsub_connection_recovers_in_order(private_redis, key_prefix):
    async with running_notifier(private_redis.url, key_prefix) as client:
        await client.subscribe(USER, "a")
        await client.subscribe(USER, "b")
        socket = await client.open_socket(USER)
        await socket.welcome()

        admin = private_redis.client()
        killed = admin.client_kill_filter(_type="pubsub")
        admin.close()
        published = [await client.publish("ab"[n % 2], f"e{n}") for n in range(10)]
        received = [await socket.next_event(timeout=10) for _ in published]
        await socket.assert_silent()
        socket.close()

    assert killed >= 1
    assert received == published


@pytest.mark.gen_test(timeout=60)
async def test_redis_data_loss_closes_sockets_with_1012(private_redis, key_prefix, tmp_path):
    async with running_notifier(private_redis.url, key_prefix) as client:
        await client.subscribe(USER, "a")
        socket = await client.open_socket(USER)
        await socket.welcome()
        for n in range(3):
            await client.publish("a", f"e{n}")
            await socket.next_event()

        # A Redis that comes back empty, as one without persistence would.
        private_redis.kill()
        for path in private_redis.data_dir.iterdir():
            if path.is_dir():
                for child in path.iterdir():
                    child.unlink()
                path.rmdir()
            else:
                path.unlink()
        private_redis.start()
        code, reason = await socket.closed(timeout=15)

    assert code == 1012
    assert reason == "event history lost"


@pytest.mark.gen_test(timeout=60)
async def test_start_without_redis_then_recover(private_redis, key_prefix):
    private_redis.stop()
    async with running_notifier(private_redis.url, key_prefix) as client:
        assert await healthz_code(client) == 503
        private_redis.start()
        await wait_until(lambda: _is_healthy(client), timeout=15)
        published = await client.publish("a", "x")
    assert published["id"] >= 1


@pytest.mark.gen_test(timeout=60)
async def test_outage_logged_once(private_redis, key_prefix, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="services.hub")
    async with running_notifier(private_redis.url, key_prefix) as client:
        private_redis.stop()
        await wait_until(lambda: any("redis pubsub lost" in r.getMessage() for r in caplog.records), timeout=5)
        private_redis.start()
        await wait_until(lambda: _is_healthy(client), timeout=15)

    lost = [record for record in caplog.records if "redis pubsub lost" in record.getMessage()]
    recovered = [record for record in caplog.records if "redis pubsub recovered" in record.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelname == "WARNING"
    assert len(recovered) == 1


@pytest.mark.gen_test(timeout=60)
async def test_reconnect_backs_off_while_redis_away(private_redis, key_prefix):
    async with running_notifier(private_redis.url, key_prefix) as client:
        hub = client.notifier.hub
        private_redis.stop()
        await wait_until(lambda: not hub.connected, timeout=5)
        first_attempt = hub.connection_attempts
        started = asyncio.get_running_loop().time()
        await wait_until(lambda: hub.connection_attempts >= first_attempt + 4, timeout=10)
        elapsed = asyncio.get_running_loop().time() - started
        private_redis.start()
        await wait_until(lambda: _is_healthy(client), timeout=15)

    # Delays double from 0.1 s, so four more attempts take at least 0.2 + 0.4 + 0.8 s
    # (the first delay may already be under way). A spinning loop would take milliseconds.
    assert elapsed >= 0.2 + 0.4 + 0.8
