"""The one error storage raises when Redis cannot serve a command."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions

T = TypeVar("T")

UNAVAILABLE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class StorageUnavailable(Exception):
    """Redis did not respond, so the operation may or may not have happened."""


def translate_redis_errors(
    method: Callable[..., Awaitable[T]],
) -> Callable[..., Awaitable[T]]:
    """Raise StorageUnavailable in place of a connection or timeout error from Redis."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except UNAVAILABLE_ERRORS as error:
            raise StorageUnavailable(f"redis unavailable: {error}") from error

    return wrapper
