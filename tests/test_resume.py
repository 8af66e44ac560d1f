"""Resume with last_event_id, gap frames, catch-up over REST and retention."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.helpers import USER, running_notifier, wait_until


@pytest.mark.gen_test
async def test_resume_sends_missed_events_then_live(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "a")
        await client.subscribe(USER, "b")
        socket = await client.open_socket(USER)
        await socket.welcome()
        seen = await client.publish("a", "seen")
        assert (await socket.next_event())["id"] == seen["id"]
        socket.close()

        missed = [await client.publish("ab"[n % 2], f"missed {n}") for n in range(5)]
        await client.publish("other", "not subscribed")
        resumed = await client.open_socket(USER, f"?last_event_id={seen['id']}")
        welcome = await resumed.welcome()
        replayed = [await resumed.next_event() for _ in missed]
        live = await client.publish("b", "live")
        after = await resumed.next_event()
        await resumed.assert_silent()
        resumed.close()

    assert welcome["last_event_id"] == missed[-1]["id"] + 1
    assert replayed == missed
    assert after == live


@pytest.mark.gen_test
async def test_resume_exactly_once_while_publishing(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "a")
        first = await client.publish("a", "first")
        for n in range(50):
            await client.publish("a", f"backlog {n}")

        async def publish_more() -> list[int]:
            return [(await client.publish("a", f"during {n}"))["id"] for n in range(30)]

        publisher = asyncio.ensure_future(publish_more())
        resumed = await client.open_socket(USER, f"?last_event_id={first['id']}")
        await resumed.welcome()
        during = await publisher
        expected = list(range(first["id"] + 1, during[-1] + 1))
        received = [(await resumed.next_event())["id"] for _ in expected]
        await resumed.assert_silent()
        resumed.close()

    assert received == expected


@pytest.mark.gen_test
async def test_resume_at_latest_id_sends_nothing_old(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "a")
        latest = await client.publish("a", "old")
        resumed = await client.open_socket(USER, f"?last_event_id={latest['id']}")
        await resumed.welcome()
        await resumed.assert_silent()
        resumed.close()


@pytest.mark.gen_test
async def test_gap_when_retention_removed_events(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix, events={"history_size": 3}) as client:
        await client.subscribe(USER, "a")
        events = [await client.publish("a", f"e{n}") for n in range(6)]
        resumed = await client.open_socket(USER, f"?last_event_id={events[0]['id']}")
        await resumed.welcome()
        gap = await resumed.next_frame()
        replayed = [await resumed.next_event() for _ in range(3)]
        resumed.close()

    assert gap == {"type": "gap", "after": events[0]["id"], "oldest_available": events[3]["id"]}
    assert replayed == events[3:]


@pytest.mark.gen_test
async def test_gap_when_id_beyond_deployment(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "a")
        only = await client.publish("a", "only")
        resumed = await client.open_socket(USER, f"?last_event_id={only['id'] + 1000}")
        welcome = await resumed.welcome()
        gap = await resumed.next_frame()
        replayed = await resumed.next_event()
        resumed.close()

    assert welcome["last_event_id"] == only["id"]
    assert gap == {"type": "gap", "after": only["id"] + 1000, "oldest_available": only["id"]}
    assert replayed == only


@pytest.mark.gen_test
async def test_no_gap_when_nothing_removed(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix, events={"history_size": 3}) as client:
        await client.subscribe(USER, "a")
        events = [await client.publish("a", f"e{n}") for n in range(5)]
        resumed = await client.open_socket(USER, f"?last_event_id={events[1]['id']}")
        await resumed.welcome()
        first = await resumed.next_frame()
        resumed.close()

    assert first == {"type": "event", "event": events[2]}


@pytest.mark.gen_test
async def test_expired_events_hidden_and_reported_as_gap(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix, events={"max_age_seconds": 1}) as client:
        await client.subscribe(USER, "a")
        old = await client.publish("a", "expires")

        async def history_empty() -> bool:
            body = json.loads((await client.request("GET", f"/events/{USER}")).body)
            return body["events"] == []

        await wait_until(history_empty, timeout=5, interval=0.1, message="event still returned after max age")
        after = json.loads((await client.request("GET", f"/events/{USER}?after=0")).body)
        resumed = await client.open_socket(USER, "?last_event_id=0")
        await resumed.welcome()
        gap = await resumed.next_frame()
        resumed.close()

    assert after["events"] == []
    assert after["next_after"] == old["id"]
    assert gap == {"type": "gap", "after": 0, "oldest_available": None}


@pytest.mark.gen_test
async def test_invalid_last_event_id_refused(redis_url, key_prefix):
    from tornado.httpclient import HTTPClientError

    async with running_notifier(redis_url, key_prefix) as client:
        with pytest.raises(HTTPClientError) as refused:
            await client.open_socket(USER, "?last_event_id=abc")
    assert refused.value.code == 400
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_query"
