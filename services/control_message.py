"""The message one instance publishes when a subscription changes, so the others update their sockets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ControlMessage:
    origin: str
    token: str
    user_uuid: str
    event_type: str
    subscribed: bool

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> ControlMessage:
        """Parse a control message; raise ValueError if it is malformed."""
        try:
            fields = json.loads(data)
            return cls(
                origin=str(fields["origin"]),
                token=str(fields["token"]),
                user_uuid=str(fields["user_uuid"]),
                event_type=str(fields["event_type"]),
                subscribed=bool(fields["subscribed"]),
            )
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"malformed control message: {error}") from None
