"""Built-in plugin: appends every logged metric to ``logs.jsonl`` in the run folder."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from ftx_hookspecs import RunContext, hookimpl

from ..layout import LOG


@hookimpl
def ftx_log_metrics(run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
    """Write one JSON line per logged step, so curves survive a crash."""
    record = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in metrics.items()}}
    with open(run.run_dir / LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
