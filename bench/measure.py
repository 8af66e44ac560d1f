"""CPU accounting of the processes in a run, and merging the workers' delivery reports."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil


def cpu_seconds(process: psutil.Process) -> float:
    """Return user + system CPU seconds of a process, or 0 if it is gone."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass
class CpuMeter:
    """CPU seconds used by the server, by Redis and by the load generator over one window."""

    server: psutil.Process
    redis: psutil.Process
    generator: list[psutil.Process]

    def start(self) -> None:
        self._wall = time.monotonic()
        self._server = cpu_seconds(self.server)
        self._redis = cpu_seconds(self.redis)
        self._generator = sum(cpu_seconds(process) for process in self.generator)

    def stop(self) -> dict[str, float]:
        """Return CPU seconds and shares (percent of one core) since start()."""
        wall = max(time.monotonic() - self._wall, 1e-9)
        server = cpu_seconds(self.server) - self._server
        redis = cpu_seconds(self.redis) - self._redis
        generator = sum(cpu_seconds(process) for process in self.generator) - self._generator
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server, 3),
            "server_cpu_pct": round(100 * server / wall, 1),
            "redis_cpu_pct": round(100 * redis / wall, 1),
            "generator_cpu_pct": round(100 * generator / wall, 1),
        }


def latency_summary(latencies_s: np.ndarray) -> dict[str, float | None]:
    """Return p50, p99, p99.9 and max of latencies given in seconds, in milliseconds."""
    if latencies_s.size == 0:
        return {"p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    p50, p99, p999 = np.percentile(latencies_s, [50, 99, 99.9]) * 1000
    return {
        "p50_ms": round(float(p50), 2),
        "p99_ms": round(float(p99), 2),
        "p999_ms": round(float(p999), 2),
        "max_ms": round(float(latencies_s.max()) * 1000, 2),
    }


def merge_deliveries(replies: list[dict[str, Any]], first_send: float) -> dict[str, Any]:
    """Add up the workers' collect replies into the figures of one phase."""
    counters = ("sockets", "delivered", "lost", "out_of_order", "unexpected", "wrong_ids", "unexpected_closes")
    merged: dict[str, Any] = {name: sum(int(reply[name]) for reply in replies) for name in counters}
    latencies = np.concatenate([np.frombuffer(reply["latencies"], dtype=np.float64) for reply in replies])
    last_receive = max(reply["last_receive"] for reply in replies)
    span = last_receive - first_send if last_receive and first_send else 0.0
    merged["delivery_span_s"] = round(span, 3)
    merged["deliveries_per_s"] = round(merged["delivered"] / span) if span > 0 else 0
    merged.update(latency_summary(latencies))
    return merged
