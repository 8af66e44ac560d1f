"""The embedded Redis keeps subscriptions and events across a restart."""

from __future__ import annotations

import json

import pytest

from tests.helpers import USER, running_notifier


@pytest.mark.gen_test(timeout=60)
async def test_restart_keeps_subscriptions_and_events(tmp_path):
    data_dir = str(tmp_path / "data")
    sections = {"redis": {"url": "", "data_dir": data_dir}}

    async with running_notifier("", "notifier:", **sections) as client:
        assert client.notifier.embedded is not None
        await client.subscribe(USER, "daily_tasks")
        published = await client.publish("daily_tasks", "kept")

    async with running_notifier("", "notifier:", **sections) as client:
        subscriptions = json.loads((await client.request("GET", f"/subscriptions/{USER}")).body)
        events = json.loads((await client.request("GET", f"/events/{USER}")).body)
        following = await client.publish("daily_tasks", "after restart")

    assert subscriptions["event_types"] == ["daily_tasks"]
    assert events["events"] == [published]
    assert following["id"] > published["id"]
