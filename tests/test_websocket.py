"""GET /notifications/{user_uuid}: refusal before the upgrade, welcome, delivery and live subscriptions."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

from tests.helpers import OTHER_USER, USER, running_notifier


@pytest.mark.gen_test
async def test_invalid_uuid_refused_before_upgrade(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(f"{client.ws_url}/notifications/not-a-uuid")
    assert refused.value.code == 400
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_user_uuid"


@pytest.mark.gen_test
async def test_plain_get_needs_websocket(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("GET", f"/notifications/{USER}")
    assert response.code == 400
    assert json.loads(response.body)["error"]["code"] == "websocket_required"


@pytest.mark.gen_test
async def test_cross_origin_refused_unless_allowed(redis_url, key_prefix):
    async with running_notifier(
        redis_url, key_prefix, websocket={"allowed_origins": ("https://app.example",)}
    ) as client:
        url = f"{client.ws_url}/notifications/{USER}"
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(_request(url, "https://evil.example"))
        allowed = await websocket_connect(_request(url, "https://app.example"))
        same_origin = await websocket_connect(_request(url, client.base_url))
        allowed.close()
        same_origin.close()

    assert refused.value.code == 403
    assert json.loads(refused.value.response.body)["error"]["code"] == "origin_not_allowed"


def _request(url: str, origin: str):
    from tornado.httpclient import HTTPRequest

    return HTTPRequest(url, headers={"Origin": origin})


@pytest.mark.gen_test
async def test_welcome_lists_subscriptions(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "b")
        await client.subscribe(USER, "a")
        latest = await client.publish("a", "before the socket")
        socket = await client.open_socket(USER.upper())
        welcome = await socket.welcome()
        socket.close()

    assert welcome == {"type": "welcome", "user_uuid": USER, "event_types": ["a", "b"], "last_event_id": latest["id"]}


@pytest.mark.gen_test
async def test_event_delivered_as_published(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "daily_tasks")
        socket = await client.open_socket(USER)
        await socket.welcome()
        published = await client.publish("daily_tasks", "daily_task1", payload={"due": "today"})
        delivered = await socket.next_event()
        socket.close()

    assert delivered == published


@pytest.mark.gen_test
async def test_other_types_and_users_not_delivered(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "mine")
        await client.subscribe(OTHER_USER, "theirs")
        socket = await client.open_socket(USER)
        await socket.welcome()
        await client.publish("theirs", "not for me")
        await client.publish("unsubscribed", "nobody's")
        mine = await client.publish("mine", "for me")
        delivered = await socket.next_event()
        await socket.assert_silent()
        socket.close()

    assert delivered["id"] == mine["id"]


@pytest.mark.gen_test
async def test_two_sockets_of_one_user_both_receive(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "t")
        first, second = await client.open_socket(USER), await client.open_socket(USER)
        await first.welcome()
        await second.welcome()
        published = [await client.publish("t", f"e{n}") for n in range(3)]
        received_first = [await first.next_event() for _ in range(3)]
        received_second = [await second.next_event() for _ in range(3)]
        first.close()
        second.close()

    assert received_first == published
    assert received_second == published


@pytest.mark.gen_test
async def test_live_subscribe_and_unsubscribe(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        socket = await client.open_socket(USER)
        assert (await socket.welcome())["event_types"] == []

        await client.subscribe(USER, "live")
        first = await client.publish("live", "after subscribe")
        assert (await socket.next_event())["id"] == first["id"]

        deleted = await client.request("DELETE", f"/subscriptions/{USER}/live")
        assert deleted.code == 204
        await client.publish("live", "after unsubscribe")
        await socket.assert_silent()

        await client.subscribe(USER, "live")
        again = await client.publish("live", "subscribed again")
        assert (await socket.next_event())["id"] == again["id"]
        socket.close()


@pytest.mark.gen_test
async def test_client_frame_answered_with_error(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "t")
        socket = await client.open_socket(USER)
        await socket.welcome()
        await socket.connection.write_message("hello?")
        error = await socket.next_frame()
        published = await client.publish("t", "still open")
        delivered = await socket.next_event()
        socket.close()

    assert error["type"] == "error"
    assert error["error"]["code"] == "unexpected_message"
    assert delivered["id"] == published["id"]


@pytest.mark.gen_test
async def test_events_in_id_order_across_types(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        for event_type in ("a", "b", "c"):
            await client.subscribe(USER, event_type)
        socket = await client.open_socket(USER)
        await socket.welcome()
        published = [await client.publish("abc"[n % 3], f"e{n}") for n in range(12)]
        delivered = [await socket.next_event() for _ in range(12)]
        socket.close()

    assert [event["id"] for event in delivered] == [event["id"] for event in published]


@pytest.mark.gen_test
async def test_shutdown_closes_sockets_going_away(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        socket = await client.open_socket(USER)
        await socket.welcome()
        await client.notifier.stop()
        code, reason = await socket.closed()
        client.notifier.stop = _already_stopped  # type: ignore[method-assign]

    assert code == 1001
    assert reason == "server shutting down"


async def _already_stopped() -> None:
    return None
