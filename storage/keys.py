"""Names of notifier's Redis keys and PubSub channels, all under one prefix."""

from __future__ import annotations


class Keys:
    """Build key and channel names from validated user ids and event types.

    PubSub ignores the database number, so channels carry the prefix too: two
    deployments sharing one Redis never hear each other's events.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sequence = f"{prefix}event_id"
        self.control_channel = f"{prefix}control"
        self._channel_prefix = f"{prefix}channel:"

    def subscriptions(self, user_uuid: str) -> str:
        return f"{self.prefix}subscriptions:{user_uuid}"

    def events(self, event_type: str) -> str:
        return f"{self.prefix}events:{event_type}"

    def trimmed(self, event_type: str) -> str:
        """Key of the highest id that retention removed from the event type's history."""
        return f"{self.prefix}trimmed:{event_type}"

    def publish_token(self, token: str) -> str:
        return f"{self.prefix}publish:{token}"

    def acknowledgements(self, token: str) -> str:
        return f"{self.prefix}ack:{token}"

    def channel(self, event_type: str) -> str:
        return self._channel_prefix + event_type

    def event_type_of(self, channel: str) -> str | None:
        """Return the event type a channel carries, or None for another channel."""
        if channel.startswith(self._channel_prefix):
            return channel[len(self._channel_prefix):]
        return None
