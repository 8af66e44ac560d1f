"""Event timestamps: created_at and the retention cutoff, in one fixed-width form."""

from __future__ import annotations

import time


def retention_cutoff(max_age_seconds: int, now: float | None = None) -> str:
    """Return the created_at of the oldest event still within the maximum age."""
    return format_timestamp((time.time() if now is None else now) - max_age_seconds)


def format_timestamp(seconds: float) -> str:
    """Format a Unix time as YYYY-MM-DDTHH:MM:SS.mmmZ, a fixed-width form that sorts as text."""
    milliseconds = int(seconds * 1000)
    whole = time.gmtime(milliseconds // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", whole) + f".{milliseconds % 1000:03d}Z"
