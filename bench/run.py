"""Benchmark notifier against a minimal Tornado fan-out (the ceiling) and python-socketio (the peer).

Run `.venv/bin/python bench/run.py --quick` (about 2 minutes) or without
--quick (the full run, about 15 minutes on 2 cores). The run starts its own
redis-server and servers on loopback ports, prints one JSON line per
measurement and a Markdown report, and writes both with PNG plots into
bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from loadgen import WorkerPool
from processes import BENCH, ProcessGroup, ServerSpec, raise_open_file_limit, start_redis
from report import markdown_report, plot_latency_against_rate, plot_scaling
from scenarios import Bench, Plan, fanout_suite, profile_suite, rest_suite, spread_suite

SCENARIOS = ("fanout", "spread", "rest", "gc", "profile")

QUICK_PLAN = Plan(
    sizes=[2000],
    sweep_size=2000,
    sweep_fractions=[0.25, 0.5, 0.75],
    burst_seconds=3,
    paced_seconds=2.5,
    spread_runs=[(1000, 4)],
    spread_types=20,
    rest_seconds=4,
    gc_size=2000,
    profile_seconds=4,
)

FULL_PLAN = Plan(
    sizes=[1000, 2000, 5000, 10000],
    sweep_size=2000,
    sweep_fractions=[0.1, 0.25, 0.5, 0.75, 0.9],
    burst_seconds=5,
    paced_seconds=4,
    spread_runs=[(1000, 1), (1000, 4), (1000, 16), (5000, 4)],
    spread_types=20,
    rest_seconds=10,
    gc_size=10000,
    profile_seconds=10,
)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one size (S=2000) and short phases, about 2 minutes")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--servers", default="notifier,ceiling,peer", help="servers for the fan-out scenario")
    parser.add_argument("--sizes", help="comma-separated socket counts for fan-out, overriding the mode's")
    parser.add_argument("--workers", type=int, default=2, help="client worker processes (default 2)")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="output folder (default bench/results)")
    parser.add_argument(
        "--report", type=Path, metavar="JSONL",
        help="only rebuild the report and plots from an earlier run's results-<run>.jsonl, measuring nothing",
    )
    return parser.parse_args(argv)


def make_plan(arguments: argparse.Namespace) -> Plan:
    base = QUICK_PLAN if arguments.quick else FULL_PLAN
    plan = Plan(**{**base.__dict__, "servers": arguments.servers.split(",")})
    if arguments.sizes:
        plan.sizes = [int(size) for size in arguments.sizes.split(",")]
    return plan


async def run_scenarios(bench: Bench, scenarios: list[str]) -> None:
    plan = bench.plan
    if "fanout" in scenarios:
        for size in plan.sizes:
            for kind in plan.servers:
                fractions = plan.sweep_fractions if size == plan.sweep_size else [0.5]
                await fanout_suite(bench, ServerSpec(kind), size, fractions)
    if "spread" in scenarios:
        for size, subscriptions in plan.spread_runs:
            await spread_suite(bench, size, subscriptions)
    if "rest" in scenarios:
        for kind in plan.servers:
            await rest_suite(bench, ServerSpec(kind))
    if "gc" in scenarios:
        for disabled in (False, True):
            spec = ServerSpec("notifier", gc_wrapper=True, gc_disabled=disabled)
            await fanout_suite(bench, spec, plan.gc_size, [0.5], scenario="gc")
    if "profile" in scenarios:
        await profile_suite(bench, plan.sweep_size)


def print_record(record: dict[str, Any]) -> None:
    print(json.dumps(record, separators=(",", ":")), flush=True)


def machine_description() -> str:
    processor = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {processor}, Linux {platform.release()}, Python {platform.python_version()}"


async def main_async(arguments: argparse.Namespace, group: ProcessGroup, run_id: str) -> int:
    plan = make_plan(arguments)
    scenarios = [name for name in arguments.scenarios.split(",") if name]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        print(f"bench: unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    results_dir: Path = arguments.results
    results_dir.mkdir(parents=True, exist_ok=True)
    jsonl_path = results_dir / f"results-{run_id}.jsonl"

    redis, redis_url = start_redis(group)
    pool = WorkerPool(arguments.workers)
    install_stop_handlers(group, pool)
    started = time.monotonic()
    with jsonl_path.open("w") as jsonl:

        def emit(record: dict[str, Any]) -> None:
            print_record(record)
            jsonl.write(json.dumps(record) + "\n")
            jsonl.flush()

        bench = Bench(group, redis, redis_url, pool, plan, run_id, results_dir, emit=emit)
        try:
            await run_scenarios(bench, scenarios)
        finally:
            await pool.shutdown()

    elapsed = time.monotonic() - started
    header = (
        f"# Benchmark run {run_id}\n\n"
        f"Mode: {'--quick' if arguments.quick else 'full'}; machine: {machine_description()}; "
        f"{arguments.workers} client worker processes; wall time {elapsed / 60:.1f} min."
    )
    write_report(bench.records, header, plan.sweep_size, results_dir, run_id)
    print(f"records: {jsonl_path}")
    return 0


def write_report(records: list[dict[str, Any]], header: str, sweep_size: int, results_dir: Path, run_id: str) -> None:
    """Print the Markdown report and write it with the two plots into `results_dir`."""
    report = markdown_report(records, header, sweep_size)
    report_path = results_dir / f"report-{run_id}.md"
    report_path.write_text(report)
    plot_scaling(records, results_dir / "scaling.png")
    plot_latency_against_rate(records, sweep_size, results_dir / "latency_vs_rate.png")
    print()
    print(report)
    print(f"report: {report_path}\nplots: {results_dir}/scaling.png, {results_dir}/latency_vs_rate.png")


def rebuild_report(jsonl_path: Path, arguments: argparse.Namespace) -> int:
    records = [json.loads(line) for line in jsonl_path.read_text().splitlines() if line.strip()]
    run_id = jsonl_path.stem.removeprefix("results-")
    header = f"# Benchmark run {run_id}\n\nRebuilt from {jsonl_path.name}."
    arguments.results.mkdir(parents=True, exist_ok=True)
    write_report(records, header, make_plan(arguments).sweep_size, arguments.results, run_id)
    return 0


def install_stop_handlers(group: ProcessGroup, pool: WorkerPool | None = None) -> None:
    """Stop every started process and exit at once on SIGINT (Ctrl-C) or SIGTERM.

    Unwinding the event loop instead would wait on clients in the middle of a
    phase, for up to that phase's timeout.
    """

    def stop_now(signal_number: int, frame: Any) -> None:
        print(f"bench: stopped by signal {signal_number}, stopping the processes it started", file=sys.stderr)
        if pool is not None:
            pool.kill()
        group.stop_all()
        os._exit(128 + signal_number)

    signal.signal(signal.SIGINT, stop_now)
    signal.signal(signal.SIGTERM, stop_now)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.report is not None:
        return rebuild_report(arguments.report, arguments)
    raise_open_file_limit()
    run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    group = ProcessGroup(arguments.results / f"logs-{run_id}")
    install_stop_handlers(group)
    try:
        return asyncio.run(main_async(arguments, group, run_id))
    finally:
        group.stop_all()


if __name__ == "__main__":
    sys.exit(main())
