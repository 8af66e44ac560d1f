"""Sample a server with py-spy while a load runs, and summarise where its time goes."""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

SAMPLE_RATE = 200
TOP_FRAMES = 12
# A py-spy raw (collapsed) line: frames joined by ';', a space, the sample count.
# A frame reads "function (path/file.py:line)".
FRAME_PATTERN = re.compile(r"^(?P<function>.*?) \((?P<path>[^():]*)(?::\d+)?\)$")


def py_spy_binary() -> str:
    """Return py-spy from the running Python's bin folder (the .venv), else from PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy not found; install it with `.venv/bin/pip install -r requirements-bench.txt`")
    return found


async def profile_during(
    pid: int, seconds: float, load: Coroutine[Any, Any, Any], output_prefix: Path
) -> dict[str, Any]:
    """Record `pid` for `seconds` with py-spy while `load` runs; write raw stacks and a summary."""
    raw_path = output_prefix.with_suffix(".raw.txt")
    argv = [
        py_spy_binary(), "record", "--pid", str(pid), "--duration", str(round(seconds)),
        "--rate", str(SAMPLE_RATE), "--nonblocking", "--format", "raw", "--output", str(raw_path),
    ]
    recorder = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        await load
    finally:
        _, stderr = await asyncio.wait_for(recorder.communicate(), seconds + 30)
    if recorder.returncode != 0:
        raise RuntimeError(f"py-spy record failed with code {recorder.returncode}: {stderr.decode(errors='replace')}")

    summary = summarise(raw_path.read_text())
    output_prefix.with_suffix(".summary.txt").write_text(format_summary(summary))
    return summary


def frame_name(frame: str) -> str:
    """Return "function (file)" for a raw frame, dropping the line number and leading folders."""
    match = FRAME_PATTERN.match(frame)
    if match is None:
        return frame
    path = match.group("path")
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('function')} ({path})"


def summarise(raw: str) -> dict[str, Any]:
    """Return the top functions by own (self) samples and by inclusive samples, as shares of all samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def top(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * count / max(total, 1), 1)] for name, count in counter.most_common(TOP_FRAMES)]

    return {"samples": total, "top_self_pct": top(own), "top_inclusive_pct": top(inclusive)}


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"samples: {summary['samples']}", "", "own time (% of samples):"]
    lines += [f"  {share:5.1f}  {name}" for name, share in summary["top_self_pct"]]
    lines += ["", "inclusive time (% of samples):"]
    lines += [f"  {share:5.1f}  {name}" for name, share in summary["top_inclusive_pct"]]
    return "\n".join(lines) + "\n"
