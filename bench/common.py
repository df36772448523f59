"""Shared pieces of the benchmarks: results file, timing, and a fixed SFT workload."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = Path(os.environ.get("FTX_BENCH_RESULTS", BENCH / "results.json"))
"""Where every benchmark merges its figures (``FTX_BENCH_RESULTS`` moves it, e.g. for tests)."""


def merge_results(section: str, figures: dict[str, Any]) -> None:
    """Merge one benchmark's figures into bench/results.json under ``section``."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = figures
    data.setdefault("_meta", {})["cpu_count"] = os.cpu_count()
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def best_of(repeats: int, func: Callable[[], float]) -> float:
    """The best (highest) of several measurements of a rate."""
    return max(func() for _ in range(repeats))


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = func()
    return time.perf_counter() - started, value


def print_table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    """rows: (figure, value, goal, verdict)."""
    print(f"\n{title}")
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "goal", "ok")]) for i in range(4)]
    for row in [("figure", "value", "goal", "ok"), *rows]:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def steady_seconds_per_step(clock: list[tuple[int, float]], warmup: int) -> tuple[float, int]:
    """Seconds per step between the first timestamped step at or after ``warmup`` and the last one, and the
    number of steps timed: start-up, the first steps' allocations and the end of training are left out."""
    points = sorted(dict(clock).items())
    after = [(s, t) for s, t in points if s >= warmup]
    if len(after) < 2:
        raise RuntimeError(f"too few logged steps after warm-up to time: {points}")
    (s0, t0), (s1, t1) = after[0], after[-1]
    return (t1 - t0) / (s1 - s0), s1 - s0
