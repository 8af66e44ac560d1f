"""Run several notifier processes on one port (SO_REUSEPORT), each with its own hub.

The supervisor starts the embedded Redis once when no URL is set, so every worker
shares it, restarts a worker that dies, and forwards SIGTERM and SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from settings import Settings
from storage.embedded import EmbeddedRedis

log = logging.getLogger("notifier.workers")

ENTRY_POINT = Path(__file__).with_name("notifier.py")
POLL_INTERVAL = 0.2
# A worker that exits sooner than this after its start counts as failing to start.
START_GRACE_SECONDS = 3.0
MAX_START_FAILURES = 3


def worker_count(configured: int) -> int:
    return configured if configured > 0 else (os.cpu_count() or 1)


def supervise(settings: Settings, count: int, config_path: str | None) -> int:
    """Run `count` workers until SIGTERM or SIGINT; return the process exit code."""
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis.url
    if not redis_url:
        embedded = EmbeddedRedis(settings.redis.data_dir)
        redis_url = embedded.start()

    environment = dict(os.environ, NOTIFIER_REDIS_URL=redis_url)
    command = [sys.executable, str(ENTRY_POINT), "--worker", "--port", str(settings.server.port)]
    if config_path:
        command += ["--config", config_path]

    stopping = False

    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    workers: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    start_failures = 0
    exit_code = 0
    try:
        for slot in range(count):
            workers[slot] = (subprocess.Popen(command, env=environment), time.monotonic())
        log.info("started %d workers on port %d", count, settings.server.port)

        while not stopping:
            time.sleep(POLL_INTERVAL)
            # Ctrl-C in a terminal signals the workers too; they exit 0 before
            # the supervisor's own handler may have run, so stop, don't restart.
            if stopping or any(process.returncode == 0 for process, _ in workers.values()):
                break
            for slot, (process, started) in list(workers.items()):
                if process.poll() is None:
                    continue
                if process.returncode == 0:
                    stopping = True
                    break
                if time.monotonic() - started < START_GRACE_SECONDS:
                    start_failures += 1
                else:
                    start_failures = 0
                if start_failures >= MAX_START_FAILURES:
                    log.error("workers keep exiting at start-up (last code %d), stopping", process.returncode)
                    exit_code = 1
                    stopping = True
                    break
                log.warning("worker pid %d exited with %d, restarting it", process.pid, process.returncode)
                workers[slot] = (subprocess.Popen(command, env=environment), time.monotonic())
    finally:
        for process, _ in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.server.shutdown_timeout + 5
        for process, _ in workers.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time, killing it", process.pid)
                process.kill()
                process.wait()
        if embedded is not None:
            embedded.stop()
    log.info("all workers stopped")
    return exit_code
