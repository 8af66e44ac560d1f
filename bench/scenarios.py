"""The benchmark scenarios: connect storm and idle memory, fan-out, spread, REST publish rate, GC."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from loadgen import NOTIFIER_PROTOCOL, SOCKETIO_PROTOCOL, WorkerPool
from measure import CpuMeter, merge_deliveries
from processes import ManagedProcess, ProcessGroup, ServerSpec, start_server
from profiling import profile_during
from publisher import Publisher, PublishLog

FANOUT_TYPE = "fanout"
# Handshakes in flight at once over all workers; Tornado listens with a backlog
# of 128, and overflowing it costs a 1 s SYN retransmit that would read as a slow server.
CONNECT_CONCURRENCY = 96
# The probe burst that warms the server up and estimates its delivery rate.
PROBE_DELIVERIES = 40_000
PUBLISH_IN_FLIGHT = 16
PACED_IN_FLIGHT = 16
SETTLE_SECONDS = 1.0


@dataclass
class Plan:
    """Sizes and durations of each scenario in one mode (quick or full)."""

    sizes: list[int]
    sweep_size: int
    sweep_fractions: list[float]
    burst_seconds: float
    paced_seconds: float
    spread_runs: list[tuple[int, int]]  # (sockets, subscriptions per user)
    spread_types: int
    rest_seconds: float
    gc_size: int
    profile_seconds: float
    servers: list[str] = field(default_factory=lambda: ["notifier", "ceiling", "peer"])


@dataclass
class Bench:
    """Shared state of a run: the processes, the client pool and the results folder."""

    group: ProcessGroup
    redis: ManagedProcess
    redis_url: str
    pool: WorkerPool
    plan: Plan
    run_id: str
    results_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    subscribed: dict[tuple[str, str], int] = field(default_factory=dict)
    emit: Callable[[dict[str, Any]], None] = print

    def key_prefix(self, spec: ServerSpec) -> str:
        return f"bench:{self.run_id}:{spec.kind}:"

    def record(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.emit(record)

    def cpu_meter(self, server: ManagedProcess) -> CpuMeter:
        generator = [psutil.Process(pid) for pid in self.pool.pids] + [psutil.Process(os.getpid())]
        return CpuMeter(server.psutil(), self.redis.psutil(), generator)


def user_uuid(group: int, index: int) -> str:
    """Return the deterministic user id `index` of a user group, so runs can reuse subscriptions."""
    return str(uuid.UUID(int=(group << 64) + index))


def protocol_of(spec: ServerSpec) -> str:
    return SOCKETIO_PROTOCOL if spec.kind == "peer" else NOTIFIER_PROTOCOL


def ws_base(base_url: str) -> str:
    return "ws" + base_url.removeprefix("http")


# Sockets


async def ensure_subscribed(
    bench: Bench, spec: ServerSpec, publisher: Publisher, group: int, users: int, event_types: list[list[str]]
) -> None:
    """Subscribe users 0..users-1 of a group to their types, skipping those subscribed earlier in this run."""
    key = (bench.key_prefix(spec), f"group-{group}")
    done = bench.subscribed.get(key, 0)
    if users <= done:
        return
    pairs = [(user_uuid(group, index), event_type) for index in range(done, users) for event_type in event_types[index]]
    await publisher.subscribe(pairs)
    bench.subscribed[key] = users


async def open_sockets(
    bench: Bench, spec: ServerSpec, base_url: str, plans: list[tuple[str, tuple[str, ...]]]
) -> dict[str, Any]:
    """Open one socket per plan over all workers; return the count and the rate of sockets opened."""
    started = time.time()
    replies = await bench.pool.connect(protocol_of(spec), ws_base(base_url), plans, CONNECT_CONCURRENCY)
    finished = max(reply["finished"] for reply in replies)
    opened = sum(reply["opened"] for reply in replies)
    errors = [error for reply in replies for error in reply["errors"]]
    elapsed = finished - started
    return {
        "opened": opened,
        "failed": sum(reply["failed"] for reply in replies),
        "errors": errors[:3],
        "connect_s": round(elapsed, 3),
        "sockets_per_s": round(opened / elapsed) if elapsed > 0 else 0,
    }


async def storm_and_memory(
    bench: Bench, spec: ServerSpec, server: ManagedProcess, base_url: str, plans: list[tuple[str, tuple[str, ...]]]
) -> dict[str, Any]:
    """Measure the connect storm and the server's RSS per idle socket."""
    # Open and close a few sockets first, so code paths and pools are warm before RSS is read.
    await open_sockets(bench, spec, base_url, plans[:50])
    await bench.pool.call("close")
    await asyncio.sleep(SETTLE_SECONDS)
    rss_before = server.psutil().memory_info().rss

    meter = bench.cpu_meter(server)
    meter.start()
    storm = await open_sockets(bench, spec, base_url, plans)
    storm.update({f"storm_{name}": value for name, value in meter.stop().items() if name.endswith("pct")})

    await asyncio.sleep(SETTLE_SECONDS)
    rss_after = server.psutil().memory_info().rss
    storm["rss_mib"] = round(rss_after / 2**20, 1)
    storm["kib_per_socket"] = round((rss_after - rss_before) / 1024 / max(storm["opened"], 1), 2)
    return storm


# Publishing phases


async def measure_phase(
    bench: Bench, server: ManagedProcess, publish: Callable[[], Awaitable[PublishLog]], expected_seconds: float
) -> dict[str, Any]:
    """Reset the clients, publish, wait for every delivery, and return the phase's figures."""
    await bench.pool.call("reset")
    meter = bench.cpu_meter(server)
    meter.start()
    log = await publish()
    replies = await bench.pool.call("collect", expected=log.expected(), timeout=10 + 3 * expected_seconds)
    cpu = meter.stop()
    figures = merge_deliveries(replies, log.first_send)
    figures["events"] = len(log.events)
    figures["late_sends"] = log.late_sends
    publish_span = log.last_ack - log.first_send
    figures["publish_rate"] = round(len(log.events) / publish_span, 1) if publish_span > 0 else None
    figures.update(cpu)
    if figures["delivered"]:
        figures["server_cpu_s_per_100k"] = round(cpu["server_cpu_s"] / figures["delivered"] * 100_000, 3)
    return figures


async def burst_phase(
    bench: Bench, server: ManagedProcess, publisher: Publisher, event_types: list[str], events: int, estimate: float
) -> dict[str, Any]:
    """Publish `events` as fast as the server accepts them: the maximum delivery rate."""
    return await measure_phase(
        bench,
        server,
        lambda: publisher.publish_burst(event_types, events, PUBLISH_IN_FLIGHT),
        expected_seconds=estimate,
    )


async def paced_phase(
    bench: Bench, server: ManagedProcess, publisher: Publisher, event_types: list[str], rate: float
) -> dict[str, Any]:
    seconds = bench.plan.paced_seconds
    return await measure_phase(
        bench,
        server,
        lambda: publisher.publish_paced(event_types, rate, seconds, PACED_IN_FLIGHT),
        expected_seconds=seconds,
    )


def burst_size(deliveries_per_s: float, deliveries_per_event: float, seconds: float) -> int:
    """Return how many events keep a burst busy for about `seconds`, within sane bounds."""
    events = deliveries_per_s * seconds / max(deliveries_per_event, 1)
    return int(min(max(events, 10), 20_000))


async def delivery_phases(
    bench: Bench,
    spec: ServerSpec,
    server: ManagedProcess,
    publisher: Publisher,
    event_types: list[str],
    deliveries_per_event: float,
    fractions: list[float],
    gc_stats: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the probe, the maximum-rate burst and paced phases at `fractions` of the maximum."""
    probe_events = max(5, math.ceil(PROBE_DELIVERIES / deliveries_per_event))
    probe = await burst_phase(bench, server, publisher, event_types, probe_events, 30)
    estimate = max(probe["deliveries_per_s"], 1000)

    events = burst_size(estimate, deliveries_per_event, bench.plan.burst_seconds)
    expected = events * deliveries_per_event / estimate
    gc_before = snapshot_gc(server, gc_stats)
    maximum = await burst_phase(bench, server, publisher, event_types, events, expected)
    maximum.update(gc_difference(gc_before, snapshot_gc(server, gc_stats)))
    maximum["phase"] = "max"
    phases = [maximum]

    max_event_rate = max(maximum["deliveries_per_s"], 1) / deliveries_per_event
    for fraction in fractions:
        gc_before = snapshot_gc(server, gc_stats)
        paced = await paced_phase(bench, server, publisher, event_types, fraction * max_event_rate)
        paced.update(gc_difference(gc_before, snapshot_gc(server, gc_stats)))
        paced["phase"] = f"rate-{fraction:g}"
        paced["fraction_of_max"] = fraction
        phases.append(paced)
    return phases


# GC statistics of the wrapped notifier


def snapshot_gc(server: ManagedProcess, stats_path: Path | None) -> dict[str, Any] | None:
    """Ask the notifier_gc.py wrapper for its collection counts (SIGUSR1) and read them."""
    if stats_path is None:
        return None
    stats_path.unlink(missing_ok=True)
    os.kill(server.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if stats_path.exists():
            return dict(json.loads(stats_path.read_text()))
        time.sleep(0.01)
    raise TimeoutError(f"{server.name} wrote no GC statistics to {stats_path} within 5 s")


def gc_difference(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    if before is None or after is None:
        return {}
    return {
        "gc_collections": [a - b for a, b in zip(after["counts"], before["counts"], strict=True)],
        "gc_pause_ms": [round(a - b, 2) for a, b in zip(after["total_ms"], before["total_ms"], strict=True)],
        "gc_max_pause_ms_so_far": after["max_ms"],
        "gc_tracked_objects": after["tracked_objects"],
    }


# Scenario suites


async def fanout_suite(
    bench: Bench, spec: ServerSpec, size: int, fractions: list[float], scenario: str = "fanout"
) -> None:
    """Connect storm, idle memory, then fan-out of one event type to `size` sockets."""
    gc_stats = bench.results_dir / f"gc-{spec.label}.json" if spec.gc_wrapper else None
    server, base_url = start_server(bench.group, spec, bench.redis_url, bench.key_prefix(spec), gc_stats)
    publisher = Publisher(base_url)
    try:
        await ensure_subscribed(bench, spec, publisher, 1, size, [[FANOUT_TYPE]] * size)
        plans: list[tuple[str, tuple[str, ...]]] = [(user_uuid(1, index), (FANOUT_TYPE,)) for index in range(size)]
        common = {"scenario": scenario, "server": spec.label, "sockets": size, "subscriptions_per_user": 1}

        storm = await storm_and_memory(bench, spec, server, base_url, plans)
        bench.record({**common, "phase": "storm", **storm})
        if storm["failed"]:
            return
        for phase in await delivery_phases(bench, spec, server, publisher, [FANOUT_TYPE], size, fractions, gc_stats):
            bench.record({**common, **phase})
    finally:
        await bench.pool.call("close")
        await publisher.close()
        bench.group.stop(server)


def spread_types_of(user_index: int, subscriptions: int, type_count: int) -> list[str]:
    """Return the event types of a spread user: `subscriptions` consecutive types, starting at a rotating one."""
    return [f"spread-{(user_index + offset) % type_count}" for offset in range(subscriptions)]


async def spread_suite(bench: Bench, size: int, subscriptions: int) -> None:
    """`size` users over K event types, each subscribed to `subscriptions` of them; notifier only."""
    spec = ServerSpec("notifier")
    type_count = bench.plan.spread_types
    group = 100 + subscriptions
    types_by_user = [spread_types_of(index, subscriptions, type_count) for index in range(size)]
    server, base_url = start_server(bench.group, spec, bench.redis_url, bench.key_prefix(spec))
    publisher = Publisher(base_url)
    try:
        await ensure_subscribed(bench, spec, publisher, group, size, types_by_user)
        plans = [(user_uuid(group, index), tuple(types)) for index, types in enumerate(types_by_user)]
        common = {
            "scenario": "spread",
            "server": spec.label,
            "sockets": size,
            "subscriptions_per_user": subscriptions,
            "event_types": type_count,
        }
        storm = await open_sockets(bench, spec, base_url, plans)
        if storm["failed"]:
            bench.record({**common, "phase": "storm", **storm})
            return
        all_types = [f"spread-{index}" for index in range(type_count)]
        per_event = size * subscriptions / type_count
        for phase in await delivery_phases(bench, spec, server, publisher, all_types, per_event, [0.5]):
            bench.record({**common, **phase})
    finally:
        await bench.pool.call("close")
        await publisher.close()
        bench.group.stop(server)


async def profile_suite(bench: Bench, size: int) -> None:
    """Profile notifier with py-spy during a maximum-rate fan-out and during a REST publish run."""
    spec = ServerSpec("notifier")
    server, base_url = start_server(bench.group, spec, bench.redis_url, bench.key_prefix(spec))
    publisher = Publisher(base_url)
    seconds = bench.plan.profile_seconds
    try:
        await ensure_subscribed(bench, spec, publisher, 1, size, [[FANOUT_TYPE]] * size)
        plans: list[tuple[str, tuple[str, ...]]] = [(user_uuid(1, index), (FANOUT_TYPE,)) for index in range(size)]
        await open_sockets(bench, spec, base_url, plans)
        probe = await burst_phase(bench, server, publisher, [FANOUT_TYPE], max(5, PROBE_DELIVERIES // size), 30)
        events = burst_size(max(probe["deliveries_per_s"], 1000), size, seconds + 2)

        async def fan_out() -> None:
            await burst_phase(bench, server, publisher, [FANOUT_TYPE], events, seconds + 2)

        summary = await profile_during(server.pid, seconds, fan_out(), bench.results_dir / "profile-fanout")
        bench.record({"scenario": "profile", "server": "notifier", "phase": "fanout", "sockets": size, **summary})
        await bench.pool.call("close")

        summary = await profile_during(
            server.pid, seconds, rest_load(base_url, seconds + 1, bench.results_dir), bench.results_dir / "profile-rest"
        )
        bench.record({"scenario": "profile", "server": "notifier", "phase": "rest", "sockets": 0, **summary})
    finally:
        await bench.pool.call("close")
        await publisher.close()
        bench.group.stop(server)


# REST publish rate

WRK_SCRIPT = """-- POST one small event per request, as a backend publishing would.
wrk.method = "POST"
wrk.body = '{"event_type":"rest","event_name":"bench","payload":{"t":0}}'
wrk.headers["Content-Type"] = "application/json"
"""
WRK_CONNECTIONS = 32


async def rest_load(base_url: str, seconds: float, results_dir: Path) -> dict[str, Any]:
    """Drive POST /events with wrk (one thread, 32 connections) and parse its report."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found on PATH; install it with `apt-get install -y wrk` or skip the rest scenario")
    script = results_dir / "post_event.lua"
    script.write_text(WRK_SCRIPT)
    argv = [
        wrk, "-t1", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency",
        "-s", str(script), f"{base_url}/events",
    ]
    # wrk is waited for by subprocess.run, so its CPU time shows up in RUSAGE_CHILDREN;
    # the servers are children too but still running, so they do not.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - started
    figures = parse_wrk(completed.stdout)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    figures["generator_cpu_pct"] = round(100 * wrk_cpu / wall, 1)
    return figures


def parse_wrk(output: str) -> dict[str, Any]:
    """Read requests, non-2xx responses, duration and latency percentiles from wrk's report."""
    requests = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if requests is None:
        raise ValueError(f"wrk report not understood:\n{output}")
    total = int(requests.group(1))
    duration = float(requests.group(2)) * (0.001 if requests.group(3) == "ms" else 1)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    rejected = int(non_2xx.group(1)) if non_2xx else 0
    figures: dict[str, Any] = {
        "requests": total,
        "rejected": rejected,
        "accepted_per_s": round((total - rejected) / duration),
        "socket_errors": errors.group(1).strip() if errors else "",
    }
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)", output, re.MULTILINE)
        if match:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            figures[key] = round(float(match.group(1)) * scale, 2)
    return figures


async def rest_suite(bench: Bench, spec: ServerSpec) -> None:
    server, base_url = start_server(bench.group, spec, bench.redis_url, bench.key_prefix(spec))
    try:
        meter = bench.cpu_meter(server)
        meter.start()
        figures = await rest_load(base_url, bench.plan.rest_seconds, bench.results_dir)
        cpu = meter.stop()
        # wrk is the load generator here; rest_load measured its share.
        cpu.pop("generator_cpu_pct")
        bench.record({"scenario": "rest", "server": spec.label, "phase": "publish", "sockets": 0, **figures, **cpu})
    finally:
        bench.group.stop(server)
