"""Turn a run's records into Markdown tables, target verdicts and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; the benchmark may run without a display
import matplotlib.pyplot as plt  # noqa: E402

Record = dict[str, Any]
SERVERS = ("notifier", "ceiling", "peer")
TARGET_SIZE = 2000


def find(records: list[Record], **match: Any) -> Record | None:
    for record in records:
        if all(record.get(key) == value for key, value in match.items()):
            return record
    return None


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def fanout_table(records: list[Record], scenario: str = "fanout") -> str:
    rows = []
    sizes = sorted({r["sockets"] for r in records if r["scenario"] == scenario})
    servers = sorted({r["server"] for r in records if r["scenario"] == scenario}, key=server_order)
    for size in sizes:
        for server in servers:
            storm = find(records, scenario=scenario, server=server, sockets=size, phase="storm") or {}
            maximum = find(records, scenario=scenario, server=server, sockets=size, phase="max") or {}
            half = find(records, scenario=scenario, server=server, sockets=size, phase="rate-0.5") or {}
            if not storm and not maximum:
                continue
            rows.append([
                server, size, storm.get("sockets_per_s"), storm.get("kib_per_socket"),
                maximum.get("deliveries_per_s"), maximum.get("server_cpu_s_per_100k"),
                maximum.get("server_cpu_pct"), maximum.get("generator_cpu_pct"),
                half.get("deliveries_per_s"), half.get("p50_ms"), half.get("p99_ms"), half.get("p999_ms"),
                half.get("max_ms"),
                sum_of(records, scenario, server, size, "lost"),
                sum_of(records, scenario, server, size, "out_of_order"),
            ])
    header = [
        "server", "S", "sockets/s", "KiB/socket", "max deliveries/s", "server CPU s/100k", "server CPU %",
        "generator CPU %", "deliveries/s at half", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "lost", "dup/out of order",
    ]
    return table(header, rows)


def server_order(server: str) -> tuple[int, str]:
    base = server.split("-")[0]
    return (SERVERS.index(base) if base in SERVERS else len(SERVERS), server)


def sum_of(records: list[Record], scenario: str, server: str, size: int, name: str) -> int:
    return sum(
        int(r.get(name) or 0) for r in records
        if r["scenario"] == scenario and r["server"] == server and r["sockets"] == size
    )


def ratio_table(records: list[Record]) -> str:
    rows = []
    for size in sorted({r["sockets"] for r in records if r["scenario"] == "fanout"}):
        rates = {}
        for server in SERVERS:
            maximum = find(records, scenario="fanout", server=server, sockets=size, phase="max") or {}
            rates[server] = maximum.get("deliveries_per_s")
        ours = rates["notifier"]
        rows.append([
            size, ours, rates["ceiling"], rates["peer"],
            round(ours / rates["ceiling"], 2) if ours and rates["ceiling"] else None,
            round(ours / rates["peer"], 2) if ours and rates["peer"] else None,
        ])
    header = ["S", "notifier deliveries/s", "ceiling", "peer", "notifier / ceiling", "notifier / peer"]
    return table(header, rows)


def sweep_table(records: list[Record], size: int) -> str:
    rows = []
    for record in records:
        if record["scenario"] == "fanout" and record["sockets"] == size and record["phase"] != "storm":
            rows.append([
                record["server"], record["phase"], record.get("publish_rate"), record.get("deliveries_per_s"),
                record.get("p50_ms"), record.get("p99_ms"), record.get("p999_ms"), record.get("max_ms"),
                record.get("server_cpu_pct"), record.get("generator_cpu_pct"), record.get("late_sends"),
            ])
    rows.sort(key=lambda row: (server_order(row[0]), row[2] or 0))
    header = [
        "server", "phase", "events/s", "deliveries/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
        "server CPU %", "generator CPU %", "late sends",
    ]
    return table(header, rows)


def spread_table(records: list[Record]) -> str:
    rows = []
    for record in records:
        if record["scenario"] == "spread" and record["phase"] in ("max", "rate-0.5"):
            rows.append([
                record["sockets"], record["subscriptions_per_user"], record.get("event_types"), record["phase"],
                record.get("deliveries_per_s"), record.get("server_cpu_s_per_100k"), record.get("p50_ms"),
                record.get("p99_ms"), record.get("p999_ms"), record.get("lost"), record.get("out_of_order"),
            ])
    header = [
        "S", "subs/user", "event types", "phase", "deliveries/s", "server CPU s/100k", "p50 ms", "p99 ms",
        "p99.9 ms", "lost", "dup/out of order",
    ]
    return table(header, rows)


def rest_table(records: list[Record]) -> str:
    rows = [
        [r["server"], r.get("accepted_per_s"), r.get("requests"), r.get("rejected"), r.get("p50_ms"), r.get("p99_ms"),
         r.get("server_cpu_pct"), r.get("redis_cpu_pct"), r.get("generator_cpu_pct"), r.get("socket_errors")]
        for r in records if r["scenario"] == "rest"
    ]
    rows.sort(key=lambda row: server_order(row[0]))
    header = [
        "server", "accepted/s", "requests", "rejected", "p50 ms", "p99 ms", "server CPU %", "redis CPU %",
        "wrk CPU %", "socket errors",
    ]
    return table(header, rows)


def gc_table(records: list[Record]) -> str:
    rows = []
    for record in records:
        if record["scenario"] == "gc" and record["phase"] != "storm":
            collections = record.get("gc_collections") or [None] * 3
            pauses = record.get("gc_pause_ms") or [None] * 3
            rows.append([
                record["server"], record["sockets"], record["phase"], record.get("deliveries_per_s"),
                record.get("p50_ms"), record.get("p99_ms"), record.get("p999_ms"), record.get("max_ms"),
                collections[2], pauses[2], (record.get("gc_max_pause_ms_so_far") or [None] * 3)[2],
                record.get("gc_tracked_objects"),
            ])
    header = [
        "server", "S", "phase", "deliveries/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
        "gen2 collections", "gen2 pause ms (total)", "longest gen2 pause ms (whole run)", "tracked objects",
    ]
    return table(header, rows)


def profile_text(records: list[Record]) -> str:
    parts = []
    for record in records:
        if record["scenario"] != "profile":
            continue
        parts.append(f"py-spy, notifier, {record['phase']} ({record['samples']} samples), own time:")
        parts += [f"  {share:5.1f}%  {name}" for name, share in record["top_self_pct"]]
        parts.append("inclusive time:")
        parts += [f"  {share:5.1f}%  {name}" for name, share in record["top_inclusive_pct"]]
        parts.append("")
    return "\n".join(parts)


def verdicts(records: list[Record]) -> list[str]:
    """Check the project's targets against this run, returning one line per target: met, or missed and by how much."""
    lines = []
    ours = find(records, scenario="fanout", server="notifier", sockets=TARGET_SIZE, phase="max")
    ceiling = find(records, scenario="fanout", server="ceiling", sockets=TARGET_SIZE, phase="max")
    peer = find(records, scenario="fanout", server="peer", sockets=TARGET_SIZE, phase="max")

    if ours and ceiling:
        ratio = ours["deliveries_per_s"] / max(ceiling["deliveries_per_s"], 1)
        lines.append(verdict(f"fan-out to {TARGET_SIZE}: notifier / ceiling = {ratio:.2f}", ratio >= 0.8, ratio / 0.8))
    if ours and peer:
        ratio = ours["deliveries_per_s"] / max(peer["deliveries_per_s"], 1)
        lines.append(verdict(f"fan-out to {TARGET_SIZE}: notifier / peer = {ratio:.2f}", ratio >= 3, ratio / 3))

    half = find(records, scenario="fanout", server="notifier", sockets=TARGET_SIZE, phase="rate-0.5")
    if half and half.get("p99_ms") is not None:
        p99 = half["p99_ms"]
        text = f"p99 at half the maximum rate, S={TARGET_SIZE}: {p99} ms (target < 50)"
        lines.append(verdict(text, p99 < 50, 50 / p99))
    storms = [r for r in records if r["scenario"] == "fanout" and r["server"] == "notifier" and r["phase"] == "storm"]
    if storms:
        worst = max(r["kib_per_socket"] for r in storms)
        text = f"RSS per idle socket: at most {worst} KiB (target <= 16)"
        lines.append(verdict(text, worst <= 16, 16 / max(worst, 0.01)))

        largest = max(storms, key=lambda r: r["sockets"])
        all_open = largest["opened"] >= 10_000 and not largest["failed"]
        delivered = find(records, scenario="fanout", server="notifier", sockets=largest["sockets"], phase="max") or {}
        served = all_open and delivered.get("lost") == 0 and delivered.get("delivered", 0) > 0
        lines.append(verdict(
            f"10,000 sockets held and served: {largest['opened']} opened, {largest['failed']} failed, "
            f"lost {delivered.get('lost')}", served, 1.0 if served else 0.0,
        ))

    rest = find(records, scenario="rest", server="notifier")
    if rest:
        rate = rest["accepted_per_s"]
        lines.append(verdict(f"POST /events: {rate} accepted/s (target >= 3,000)", rate >= 3000, rate / 3000))
    ours_records = [r for r in records if r["server"].startswith("notifier")]
    lost = sum(int(r.get("lost") or 0) + int(r.get("out_of_order") or 0) for r in ours_records)
    lines.append(verdict(f"notifier lost + duplicated/out-of-order deliveries over all runs: {lost}", lost == 0, 1.0))
    return lines


def verdict(text: str, met: bool, factor: float) -> str:
    if met:
        return f"MET     {text}"
    return f"MISSED  {text} ({factor:.2f} x the target)"


def markdown_report(records: list[Record], header: str, sweep_size: int) -> str:
    sections = [
        header,
        "## Targets\n\n" + "\n".join(f"- {line}" for line in verdicts(records)),
        "## Fan-out, connect storm and idle memory\n\n" + fanout_table(records),
        "## Ratios of maximum deliveries/s\n\n" + ratio_table(records),
        f"## Latency against publish rate, S={sweep_size}\n\n" + sweep_table(records, sweep_size),
        "## Spread over event types (notifier)\n\n" + spread_table(records),
        "## POST /events with wrk\n\n" + rest_table(records),
        "## Garbage collection\n\n" + gc_table(records),
        "## Profile\n\n```\n" + profile_text(records) + "```",
    ]
    return "\n\n".join(sections) + "\n"


# Plots


def plot_scaling(records: list[Record], path: Path) -> None:
    figure, (rate_axes, latency_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in SERVERS:
        points = sorted(
            (r["sockets"], r) for r in records
            if r["scenario"] == "fanout" and r["server"] == server and r["phase"] == "max"
        )
        half = sorted(
            (r["sockets"], r) for r in records
            if r["scenario"] == "fanout" and r["server"] == server and r["phase"] == "rate-0.5"
        )
        if points:
            rate_axes.plot([s for s, _ in points], [r["deliveries_per_s"] for _, r in points], marker="o", label=server)
        if half:
            latency_axes.plot([s for s, _ in half], [r["p99_ms"] for _, r in half], marker="o", label=server)
    rate_axes.set(xlabel="sockets (S)", ylabel="deliveries/s", title="Maximum fan-out rate")
    latency_axes.set(xlabel="sockets (S)", ylabel="p99 latency, ms", title="p99 at half the maximum rate", yscale="log")
    latency_axes.axhline(50, color="grey", linestyle="--", linewidth=1, label="50 ms target")
    for axes in (rate_axes, latency_axes):
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_latency_against_rate(records: list[Record], size: int, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for index, server in enumerate(SERVERS):
        color = f"C{index}"
        points = sorted(
            (r["deliveries_per_s"], r) for r in records
            if r["scenario"] == "fanout" and r["server"] == server and r["sockets"] == size
            and r["phase"].startswith("rate-")
        )
        if points:
            rates = [rate for rate, _ in points]
            axes.plot(rates, [r["p99_ms"] for _, r in points], marker="o", color=color, label=f"{server} p99")
            axes.plot(
                rates, [r["p50_ms"] for _, r in points], marker=".", linestyle=":", color=color, label=f"{server} p50"
            )
    axes.set(
        xlabel="deliveries/s (publish rate x S)", ylabel="latency, ms", yscale="log",
        title=f"Latency against publish rate, S={size}",
    )
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
