"""Run notifier.main with garbage collection counted, or switched off, for the GC scenario.

Environment:
- BENCH_GC_STATS: a path. On each SIGUSR1 the wrapper writes JSON there with
  the number, total and longest pause (milliseconds) of collections per
  generation so far. The benchmark takes the difference over one phase.
- BENCH_GC_DISABLE=1: call gc.disable() before notifier starts, the same as a
  notifier without the cyclic collector (reference counting still frees most objects).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class CollectionTimer:
    """Collection counts and pause times per generation, fed by gc.callbacks."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        pause_ms = (time.perf_counter() - self._started) * 1000
        self.counts[generation] += 1
        self.total_ms[generation] += pause_ms
        self.max_ms[generation] = max(self.max_ms[generation], pause_ms)

    def write(self, path: str) -> None:
        report = {
            "gc_enabled": gc.isenabled(),
            "counts": self.counts,
            "total_ms": [round(value, 3) for value in self.total_ms],
            "max_ms": [round(value, 3) for value in self.max_ms],
            "tracked_objects": len(gc.get_objects()),
        }
        # Written to a temporary name and renamed, so a reader never sees half a file.
        temporary = Path(path + ".tmp")
        temporary.write_text(json.dumps(report))
        temporary.replace(path)


def main() -> int:
    # The notifier checkout to run: the first argument, else the repository this file is in.
    checkout = sys.argv[1] if len(sys.argv) > 1 else str(REPO)
    sys.path.insert(0, checkout)
    import notifier  # imported after the path is set: notifier.py lives at the checkout's root

    timer = CollectionTimer()
    gc.callbacks.append(timer)
    stats_path = os.environ.get("BENCH_GC_STATS")
    if stats_path:
        signal.signal(signal.SIGUSR1, lambda signal_number, frame: timer.write(stats_path))
    if os.environ.get("BENCH_GC_DISABLE") == "1":
        gc.disable()
    return notifier.main([])


if __name__ == "__main__":
    sys.exit(main())
