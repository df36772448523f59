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
