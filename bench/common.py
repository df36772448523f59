"""Shared pieces of the benchmarks: results file, timing, and a fixed SFT workload."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def steady_window(clock: list[tuple[int, float]], warmup: int) -> tuple[int, int, float]:
    """The first timestamped step at or after ``warmup``, the last one, and the seconds between them: the
    steps after the first one are the steady ones (start-up and the first steps' allocations left out)."""
    points = sorted(dict(clock).items())
    after = [(s, t) for s, t in points if s >= warmup]
    if len(after) < 2:
        raise RuntimeError(f"too few logged steps after warm-up to time: {points}")
    (s0, t0), (s1, t1) = after[0], after[-1]
    return s0, s1, t1 - t0


def steady_seconds_per_step(clock: list[tuple[int, float]], warmup: int) -> tuple[float, int]:
    """Seconds per step between the first timestamped step at or after ``warmup`` and the last one, and the
    number of steps timed: start-up, the first steps' allocations and the end of training are left out."""
    s0, s1, seconds = steady_window(clock, warmup)
    return seconds / (s1 - s0), s1 - s0


def load_average() -> float:
    """The 1-minute load average (NaN where /proc is absent): recorded beside timings on a shared machine."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


@contextmanager
def counting_batch_tokens(counts: list[int]) -> Iterator[None]:
    """Append the real (non-padding) tokens of every batch ftx's collators build to ``counts``, in order: with
    one batch a step (grad_accum 1) the k-th count is step k + 1's (the loader may build it early, in order)."""
    from ftx.api import CausalLMCollator, PackedCollator

    originals = {cls: cls.__call__ for cls in (CausalLMCollator, PackedCollator)}

    def counted(call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, features: Any) -> Any:
            counts.append(sum(len(f["input_ids"]) for f in features))
            return call(self, features)
        return wrapper

    for cls, call in originals.items():
        cls.__call__ = counted(call)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, call in originals.items():
            cls.__call__ = call  # type: ignore[method-assign]


def ftx_steady_run(recipe: Path, output: Path, warmup: int) -> dict[str, float]:
    """Train ``recipe`` with ftx in this process: steady seconds and real tokens per step, timed by an
    ``ftx_log_metrics`` plugin as each logged step ends (start-up and the first ``warmup`` steps left out)."""
    from ftx.plugins import make_plugin_manager
    from ftx.runner import run_recipe
    from ftx_hookspecs import hookimpl

    clock: list[tuple[int, float]] = []
    counts: list[int] = []

    class StepClock:
        @hookimpl
        def ftx_log_metrics(self, run: Any, step: int, metrics: Any) -> None:
            if "loss" in metrics:
                clock.append((step, time.perf_counter()))

    manager = make_plugin_manager(extra_plugins=[StepClock()])
    with counting_batch_tokens(counts):
        run_recipe(manager.load_recipe(recipe), manager, output=output, echo=lambda _m: None)
    s0, s1, seconds = steady_window(clock, warmup)
    return {"seconds_per_step": seconds / (s1 - s0), "tokens_per_step": sum(counts[s0:s1]) / (s1 - s0),
            "timed_steps": s1 - s0}


def method_table(method: str, lora: dict[str, float]) -> str:
    """A recipe's ``[method]`` table: ``method``, with ``lora``'s options on every linear layer when it is LoRA."""
    options = "".join(f"{k} = {v}\n" for k, v in lora.items()) + 'target_modules = "all-linear"\n'
    return f'[method]\nuse = "{method}"\n' + (options if method == "lora" else "")
