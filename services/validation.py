"""Validate identifiers and the body of POST /events.

Redis keys and channel names are built only from values that passed these
checks, so no input can reach another user's data or act as a glob pattern.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.errors import InvalidInput

USER_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EVENT_TYPE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_EVENT_NAME_LENGTH = 256
EVENT_FIELDS = ("event_type", "event_name", "payload")


@dataclass(frozen=True)
class NewEvent:
    event_type: str
    event_name: str
    payload: dict[str, Any] | None


def validate_user_uuid(value: str) -> str:
    """Return the user id in lower case; raise InvalidInput unless it is an 8-4-4-4-12 hex UUID."""
    if not USER_UUID.fullmatch(value):
        raise InvalidInput(
            "invalid_user_uuid",
            f"user_uuid {value!r} is not a UUID in the 8-4-4-4-12 hexadecimal form",
        )
    return value.lower()


def validate_event_type(value: Any) -> str:
    """Return the event type; raise InvalidInput unless it is 1 to 64 of A-Z a-z 0-9 _ . -"""
    if not isinstance(value, str) or not EVENT_TYPE.fullmatch(value):
        raise InvalidInput(
            "invalid_event_type",
            f"event_type {value!r} must be 1 to 64 characters from A-Z a-z 0-9 _ . -",
        )
    return value


def parse_new_event(body: bytes) -> NewEvent:
    """Parse and validate a POST /events body; the InvalidInput raised names the field at fault."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("invalid_json", "request body must be a JSON object in UTF-8") from None
    if not isinstance(document, dict):
        raise InvalidInput("invalid_json", "request body must be a JSON object")

    for field in document:
        if field not in EVENT_FIELDS:
            raise InvalidInput(
                "unknown_field",
                f"unknown field {field!r}; the fields are event_type, event_name and payload",
            )
    for field in ("event_type", "event_name"):
        if field not in document:
            raise InvalidInput("missing_field", f"field {field!r} is required")

    event_type = validate_event_type(document["event_type"])
    event_name = document["event_name"]
    if not isinstance(event_name, str) or not event_name:
        raise InvalidInput("invalid_field", "field 'event_name' must be a non-empty string")
    if len(event_name) > MAX_EVENT_NAME_LENGTH:
        raise InvalidInput(
            "invalid_field",
            f"field 'event_name' must be at most {MAX_EVENT_NAME_LENGTH} characters, got {len(event_name)}",
        )

    payload = document.get("payload")
    if "payload" in document and not isinstance(payload, dict):
        raise InvalidInput("invalid_field", "field 'payload' must be a JSON object when present")

    return NewEvent(event_type, event_name, payload)


def parse_positive_id(name: str, value: str) -> int:
    """Parse an event id query argument; raise InvalidInput unless it is a positive integer."""
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise InvalidInput("invalid_query", f"query argument {name!r} must be a positive integer, got {value!r}")
    return int(value)


def parse_non_negative_id(name: str, value: str) -> int:
    """Parse an event id query argument that may be 0; raise InvalidInput otherwise."""
    if not value.isascii() or not value.isdigit():
        raise InvalidInput(
            "invalid_query", f"query argument {name!r} must be a whole number of 0 or more, got {value!r}"
        )
    return int(value)


def parse_limit(value: str, maximum: int = 1000) -> int:
    """Parse ?limit=; raise InvalidInput unless it is 1 to `maximum`."""
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= maximum:
        raise InvalidInput("invalid_query", f"query argument 'limit' must be 1 to {maximum}, got {value!r}")
    return int(value)
