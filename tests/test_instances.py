"""Several notifier instances on one Redis act as one service."""

from __future__ import annotations

import pytest

from tests.helpers import USER, running_notifier


@pytest.mark.gen_test
async def test_cross_instance_subscribe_and_publish(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as first, running_notifier(redis_url, key_prefix) as second:
        socket = await second.open_socket(USER)
        await socket.welcome()

        # The subscription is made on the instance that does not hold the socket,
        # and must be in force there by the time the response arrives.
        await first.subscribe(USER, "daily_tasks")
        from_first = await first.publish("daily_tasks", "via first")
        from_second = await second.publish("daily_tasks", "via second")
        delivered = [await socket.next_event(), await socket.next_event()]
        await socket.assert_silent()
        socket.close()

    assert delivered == [from_first, from_second]


@pytest.mark.gen_test
async def test_unsubscribe_on_other_instance_stops_delivery(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as first, running_notifier(redis_url, key_prefix) as second:
        await first.subscribe(USER, "t")
        socket = await second.open_socket(USER)
        await socket.welcome()

        deleted = await first.request("DELETE", f"/subscriptions/{USER}/t")
        await first.publish("t", "after unsubscribe")
        await socket.assert_silent()
        socket.close()

    assert deleted.code == 204


@pytest.mark.gen_test
async def test_sockets_on_both_instances_each_get_event_once(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as first, running_notifier(redis_url, key_prefix) as second:
        await first.subscribe(USER, "t")
        on_first, on_second = await first.open_socket(USER), await second.open_socket(USER)
        await on_first.welcome()
        await on_second.welcome()
        published = await second.publish("t", "to both")
        assert await on_first.next_event() == published
        assert await on_second.next_event() == published
        await on_first.assert_silent()
        await on_second.assert_silent()
        on_first.close()
        on_second.close()


@pytest.mark.gen_test
async def test_ids_increase_across_instances(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as first, running_notifier(redis_url, key_prefix) as second:
        ids = []
        for n in range(6):
            client = first if n % 2 else second
            ids.append((await client.publish("t", f"e{n}"))["id"])
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
