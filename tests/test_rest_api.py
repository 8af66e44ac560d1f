"""REST endpoints: success paths and every error code, against a real Redis."""

from __future__ import annotations

import json

import pytest

from tests.helpers import OTHER_USER, USER, running_notifier


def error_code(response) -> str:
    body = json.loads(response.body)
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["code"]


@pytest.mark.gen_test
async def test_subscribe_created_then_existing(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        first = await client.request("POST", f"/subscriptions/{USER}/daily_tasks")
        second = await client.request("POST", f"/subscriptions/{USER}/daily_tasks")

    assert first.code == 201
    assert json.loads(first.body) == {"user_uuid": USER, "event_type": "daily_tasks"}
    assert second.code == 200
    assert json.loads(second.body) == {"user_uuid": USER, "event_type": "daily_tasks"}


@pytest.mark.gen_test
async def test_list_subscriptions_sorted(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        for event_type in ("zeta", "alpha", "Mid.dle-1_x"):
            await client.subscribe(USER, event_type)
        response = await client.request("GET", f"/subscriptions/{USER}")
        unknown = await client.request("GET", f"/subscriptions/{OTHER_USER}")

    assert response.code == 200
    assert json.loads(response.body) == {"user_uuid": USER, "event_types": ["Mid.dle-1_x", "alpha", "zeta"]}
    assert unknown.code == 200
    assert json.loads(unknown.body) == {"user_uuid": OTHER_USER, "event_types": []}


@pytest.mark.gen_test
async def test_upper_case_uuid_is_same_user(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("POST", f"/subscriptions/{USER.upper()}/daily_tasks")
        listed = await client.request("GET", f"/subscriptions/{USER}")

    assert response.code == 201
    assert json.loads(response.body)["user_uuid"] == USER
    assert json.loads(listed.body)["event_types"] == ["daily_tasks"]


@pytest.mark.gen_test
async def test_unsubscribe(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "daily_tasks")
        deleted = await client.request("DELETE", f"/subscriptions/{USER}/daily_tasks")
        again = await client.request("DELETE", f"/subscriptions/{USER}/daily_tasks")
        listed = await client.request("GET", f"/subscriptions/{USER}")

    assert deleted.code == 204
    assert deleted.body == b""
    assert again.code == 404
    assert error_code(again) == "subscription_not_found"
    assert json.loads(listed.body)["event_types"] == []


@pytest.mark.parametrize(
    "user",
    [
        "not-a-uuid",
        "6f1c2a9e3b7d4e8a9c0f1a2b3c4d5e6f",
        "{6f1c2a9e-3b7d-4e8a-9c0f-1a2b3c4d5e6f}",
        "6f1c2a9e-3b7d-4e8a-9c0f-1a2b3c4d5e6f%0A",
        "6f1c2a9e-3b7d-4e8a-9c0f-1a2b3c4d5e6g",
        "%2A",
    ],
)
@pytest.mark.gen_test
async def test_invalid_user_uuid_rejected(redis_url, key_prefix, user):
    async with running_notifier(redis_url, key_prefix) as client:
        responses = [
            await client.request("POST", f"/subscriptions/{user}/daily_tasks"),
            await client.request("DELETE", f"/subscriptions/{user}/daily_tasks"),
            await client.request("GET", f"/subscriptions/{user}"),
            await client.request("GET", f"/events/{user}"),
            await client.request("GET", f"/notifications/{user}"),
        ]
    for response in responses:
        assert response.code == 400, response.effective_url
        assert error_code(response) == "invalid_user_uuid"


@pytest.mark.parametrize("event_type", ["a*", "x:y", "a%20b", "%3F", "", "a" * 65, "%C3%A9t%C3%A9"])
@pytest.mark.gen_test
async def test_invalid_event_type_rejected(redis_url, key_prefix, event_type):
    async with running_notifier(redis_url, key_prefix) as client:
        subscribe = await client.request("POST", f"/subscriptions/{USER}/{event_type}")
        unsubscribe = await client.request("DELETE", f"/subscriptions/{USER}/{event_type}")

    for response in (subscribe, unsubscribe):
        assert response.code == 400
        assert error_code(response) == "invalid_event_type"


@pytest.mark.gen_test
async def test_event_type_max_length_accepted(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("POST", f"/subscriptions/{USER}/{'a' * 64}")
    assert response.code == 201


@pytest.mark.gen_test
async def test_publish_returns_stored_event(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        first = await client.publish("daily_tasks", "daily_task1")
        second = await client.publish("other", "x", payload={"n": [1, 2, {"k": None}]})

    assert set(first) == {"id", "event_type", "event_name", "created_at"}
    assert first["event_type"] == "daily_tasks"
    assert first["event_name"] == "daily_task1"
    assert isinstance(first["id"], int) and first["id"] >= 1
    assert second["id"] > first["id"]
    assert second["payload"] == {"n": [1, 2, {"k": None}]}
    assert len(first["created_at"]) == 24
    assert first["created_at"].endswith("Z")


@pytest.mark.gen_test
async def test_unicode_event_name_round_trips(redis_url, key_prefix):
    name = "Задача 📅 — «ä» \u2028 \"quoted\" \\ 中文"
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "daily_tasks")
        published = await client.publish("daily_tasks", name, payload={"ключ": "значение"})
        listed = json.loads((await client.request("GET", f"/events/{USER}")).body)

    assert published["event_name"] == name
    assert listed["events"][0]["event_name"] == name
    assert listed["events"][0]["payload"] == {"ключ": "значение"}


@pytest.mark.gen_test
async def test_event_name_length_counts_code_points(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        longest = await client.request("POST", "/events", json.dumps({"event_type": "t", "event_name": "😀" * 256}))
        too_long = await client.request("POST", "/events", json.dumps({"event_type": "t", "event_name": "a" * 257}))

    assert longest.code == 201
    assert too_long.code == 400
    assert error_code(too_long) == "invalid_field"


@pytest.mark.parametrize(
    "body, code",
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"event_name": "x"}', "missing_field"),
        (b'{"event_type": "t"}', "missing_field"),
        (b'{"event_type": "t", "event_name": 5}', "invalid_field"),
        (b'{"event_type": "t", "event_name": ""}', "invalid_field"),
        (b'{"event_type": "t", "event_name": "x", "payload": null}', "invalid_field"),
        (b'{"event_type": "t", "event_name": "x", "payload": [1]}', "invalid_field"),
        (b'{"event_type": "t", "event_name": "\\ud800"}', "invalid_field"),
        (b'{"event_type": "t", "event_name": "x", "extra": 1}', "unknown_field"),
        (b'{"event_type": "a*", "event_name": "x"}', "invalid_event_type"),
        (b'{"event_type": 7, "event_name": "x"}', "invalid_event_type"),
    ],
)
@pytest.mark.gen_test
async def test_publish_invalid_body(redis_url, key_prefix, body, code):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("POST", "/events", body)
    assert response.code == 400
    assert error_code(response) == code


@pytest.mark.gen_test
async def test_unknown_field_message_names_field(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("POST", "/events", b'{"event_type": "t", "event_name": "x", "colour": 1}')
    assert "colour" in json.loads(response.body)["error"]["message"]


@pytest.mark.gen_test
async def test_publish_form_content_type_read_as_json(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request(
            "POST", "/events", b'{"event_type": "daily_tasks", "event_name": "daily_task1"}',
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.code == 201


@pytest.mark.gen_test
async def test_publish_body_too_large(redis_url, key_prefix):
    body = json.dumps({"event_type": "t", "event_name": "x", "payload": {"blob": "a" * 70000}})
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("POST", "/events", body)
    assert response.code == 413
    assert error_code(response) == "body_too_large"


@pytest.mark.gen_test
async def test_events_of_subscribed_types_newest_first(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        before_subscribing = await client.publish("daily_tasks", "early")
        await client.subscribe(USER, "daily_tasks")
        await client.subscribe(USER, "news")
        news = await client.publish("news", "n1")
        await client.publish("ignored", "i1")
        late = await client.publish("daily_tasks", "late")
        response = await client.request("GET", f"/events/{USER}")

    body = json.loads(response.body)
    assert response.code == 200
    assert body["user_uuid"] == USER
    assert [event["id"] for event in body["events"]] == [late["id"], news["id"], before_subscribing["id"]]
    assert body["events"][0] == late
    assert body["next_before"] is None


@pytest.mark.gen_test
async def test_events_pagination_with_before(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "a")
        await client.subscribe(USER, "b")
        ids = [(await client.publish("a" if n % 2 else "b", f"e{n}"))["id"] for n in range(7)]
        pages, before = [], None
        for _ in range(5):
            query = "?limit=3" + (f"&before={before}" if before else "")
            page = json.loads((await client.request("GET", f"/events/{USER}{query}")).body)
            pages.append([event["id"] for event in page["events"]])
            before = page["next_before"]
            if before is None:
                break

    assert pages == [ids[6:3:-1], ids[3:0:-1], ids[0:1]]


@pytest.mark.gen_test
async def test_events_after_oldest_first(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.subscribe(USER, "a")
        ids = [(await client.publish("a", f"e{n}"))["id"] for n in range(4)]
        page = json.loads((await client.request("GET", f"/events/{USER}?after={ids[0]}&limit=2")).body)
        empty = json.loads((await client.request("GET", f"/events/{USER}?after={ids[-1]}")).body)

    assert [event["id"] for event in page["events"]] == ids[1:3]
    assert page["next_after"] == ids[2]
    assert empty["events"] == []
    assert empty["next_after"] == ids[-1]


@pytest.mark.gen_test
async def test_events_unknown_user_empty(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        await client.publish("a", "x")
        response = await client.request("GET", f"/events/{OTHER_USER}")
    assert json.loads(response.body) == {"user_uuid": OTHER_USER, "events": [], "next_before": None}


@pytest.mark.parametrize(
    "query",
    ["?limit=0", "?limit=1001", "?limit=abc", "?limit=-1", "?before=0", "?before=x", "?before=-3",
     "?after=x", "?before=1&after=1", "?limit=%EF%BC%91"],
)
@pytest.mark.gen_test
async def test_events_invalid_query(redis_url, key_prefix, query):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("GET", f"/events/{USER}{query}")
    assert response.code == 400
    assert error_code(response) == "invalid_query"


@pytest.mark.gen_test
async def test_history_size_bounds_each_type(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix, events={"history_size": 3}) as client:
        await client.subscribe(USER, "a")
        ids = [(await client.publish("a", f"e{n}"))["id"] for n in range(5)]
        body = json.loads((await client.request("GET", f"/events/{USER}")).body)
    assert [event["id"] for event in body["events"]] == ids[:1:-1]


@pytest.mark.gen_test
async def test_unknown_route_and_method(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        unknown = await client.request("GET", "/nothing/here")
        wrong_method = await client.request("PUT", "/events", b"{}")
        wrong_method_subscriptions = await client.request("PATCH", f"/subscriptions/{USER}")

    assert unknown.code == 404
    assert error_code(unknown) == "not_found"
    assert wrong_method.code == 405
    assert error_code(wrong_method) == "method_not_allowed"
    assert wrong_method_subscriptions.code == 405
    assert error_code(wrong_method_subscriptions) == "method_not_allowed"


@pytest.mark.gen_test
async def test_healthz_ok(redis_url, key_prefix):
    async with running_notifier(redis_url, key_prefix) as client:
        response = await client.request("GET", "/healthz")
    assert response.code == 200
    assert json.loads(response.body)["status"] == "ok"
