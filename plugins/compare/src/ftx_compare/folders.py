"""``ftx runs`` and ``ftx compare``: what the run folders under a directory hold, and how two differ.

A run folder is one with a ``recipe.lock.toml``. Its status is ``complete`` (``metrics.json``
written), ``failed`` (``error.txt``), ``pruned`` (a sweep trial its pruner stopped) or
``incomplete`` (still running, or killed). Only JSON and
TOML files are read: these commands never import torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ftx.api import CHECKPOINTS_DIR, ERROR_FILE, LOCK_FILE, METRICS_FILE, MODEL_DIR, toml_loads
from ftx.errors import RecipeError

MARKER = LOCK_FILE
SKIPPED_DIRS = frozenset({CHECKPOINTS_DIR, MODEL_DIR, ".model.tmp", "mlruns", "tensorboard", "__pycache__", ".git"})
"""Folders inside a run that hold no runs of their own; not walked."""
METRIC_TABLES = ("before", "after", "train", "baseline", "forgetting", "figures")
"""Tables of ``metrics.json`` that ``ftx compare`` shows (numbers only)."""


def find_runs(root: Path) -> list[Path]:
    """Run folders at or under ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise RecipeError(f"{root} is not a folder")
    found = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        if MARKER in files:
            found.append(Path(here))
    return found


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_lock(run_dir: Path) -> dict[str, Any]:
    try:
        return toml_loads((run_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_status(run_dir: Path) -> str:
    """``complete``, ``failed``, ``pruned`` (stopped by ``ftx sweep``'s pruner) or ``incomplete``."""
    if (run_dir / METRICS_FILE).is_file():
        return "complete"
    error = run_dir / ERROR_FILE
    if error.is_file():
        tail = error.read_text(encoding="utf-8", errors="replace")[-2000:]
        return "pruned" if "TrialPruned" in tail else "failed"
    return "incomplete"


def main_figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Each evaluator's first after-training figure, named ``evaluator`` (or ``evaluator.figure`` when they differ)."""
    out: dict[str, float] = {}
    for evaluator, figures in (metrics.get("after") or {}).items():
        if not isinstance(figures, Mapping):
            continue
        for figure, value in figures.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                same = figure == evaluator.replace("-", "_")
                out[evaluator if same else f"{evaluator}.{figure}"] = float(value)
                break
    return out


def run_summary(run_dir: Path, root: Path | None = None) -> dict[str, Any]:
    """What ``ftx runs`` shows for one folder."""
    lock = _read_lock(run_dir)
    metrics = _read_json(run_dir / METRICS_FILE)
    status = run_status(run_dir)
    name = str(run_dir.relative_to(root)) if root is not None and run_dir != root else run_dir.name
    seconds = (metrics.get("train") or {}).get("seconds")
    return {
        "run": name or ".",
        "path": str(run_dir),
        "status": status,
        "method": (lock.get("method") or {}).get("use"),
        "objective": (lock.get("objective") or {}).get("use"),
        "metrics": main_figures(metrics),
        "seconds": float(seconds) if isinstance(seconds, (int, float)) else None,
        "created": (lock.get("ftx") or {}).get("created"),
    }


def list_runs(root: Path) -> list[dict[str, Any]]:
    """``run_summary`` of every run folder under ``root``."""
    root = Path(root)
    return [run_summary(path, root) for path in find_runs(root)]


def _fmt(value: Any, width: int = 40) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(x) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
    return ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *rows]]


def format_runs(rows: list[dict[str, Any]]) -> str:
    """The ``ftx runs`` table."""
    if not rows:
        return f"no run folders (with {MARKER}) found"
    body = [[r["run"], r["status"], r["method"] or "-", r["objective"] or "-",
             "  ".join(f"{k}={_fmt(v)}" for k, v in r["metrics"].items()) or "-",
             f"{r['seconds']:.0f}" if r["seconds"] is not None else "-"] for r in rows]
    return "\n".join(table(["run", "status", "method", "objective", "after", "seconds"], body))


# -- compare ---------------------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables (and arrays of tables) as dotted keys: ``evaluators.0.use``."""
    if isinstance(value, Mapping):
        items: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return out


def _recipe_keys(lock: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved recipe, plus which plugin version provided each component."""
    data = {k: v for k, v in lock.items() if k != "ftx"}
    components = (lock.get("ftx") or {}).get("components")
    if components:
        data["components"] = components
    return flatten(data)


def _metric_keys(metrics: Mapping[str, Any]) -> dict[str, float]:
    flat = flatten({k: metrics[k] for k in METRIC_TABLES if k in metrics})
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _load_run(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    if not (path / MARKER).is_file():
        raise RecipeError(f"{path} is not a run folder (no {MARKER}); `ftx runs` lists them")
    return _read_lock(path), _read_json(path / METRICS_FILE)


def compare_runs(a: Path, b: Path) -> dict[str, Any]:
    """Recipe keys and metrics of two runs side by side, each row marked when the two differ."""
    lock_a, metrics_a = _load_run(a)
    lock_b, metrics_b = _load_run(b)
    keys_a, keys_b = _recipe_keys(lock_a), _recipe_keys(lock_b)
    recipe = [{"key": k, "a": keys_a.get(k), "b": keys_b.get(k), "differs": keys_a.get(k) != keys_b.get(k)}
              for k in sorted(set(keys_a) | set(keys_b))]
    fig_a, fig_b = _metric_keys(metrics_a), _metric_keys(metrics_b)
    figures = []
    for k in sorted(set(fig_a) | set(fig_b), key=lambda k: (METRIC_TABLES.index(k.split(".")[0]), k)):
        va, vb = fig_a.get(k), fig_b.get(k)
        delta = vb - va if va is not None and vb is not None else None
        figures.append({"key": k, "a": va, "b": vb, "delta": delta, "differs": va != vb})
    return {"a": {"path": str(a), "status": run_status(Path(a))}, "b": {"path": str(b), "status": run_status(Path(b))},
            "recipe": recipe, "metrics": figures}


def format_compare(result: Mapping[str, Any], *, only_diff: bool = False, color: bool = False) -> str:
    """Two tables (recipe, metrics); differing rows start with ``*`` (and are yellow with ``color``)."""
    import click

    def render(title: str, rows: list[dict[str, Any]], extra: bool) -> list[str]:
        shown = [r for r in rows if r["differs"] or not only_diff]
        head = [title, "A", "B", *(["B - A"] if extra else [])]
        body = [[("* " if r["differs"] else "  ") + r["key"], _fmt(r["a"]), _fmt(r["b"]),
                 *([_fmt(r["delta"]) if r["delta"] is not None else "-"] if extra else [])] for r in shown]
        lines = table(head, body)
        if color:
            lines = [lines[0]] + [click.style(line, fg="yellow", bold=True) if r["differs"] else line
                                  for line, r in zip(lines[1:], shown)]
        same = sum(1 for r in rows if not r["differs"])
        if only_diff and same:
            lines.append(f"  ({same} equal keys not shown)")
        return lines

    differ = sum(1 for r in result["recipe"] if r["differs"])
    out = [f"A: {result['a']['path']} ({result['a']['status']})", f"B: {result['b']['path']} ({result['b']['status']})",
           f"{differ} recipe keys differ (marked *)", ""]
    out += render("recipe", result["recipe"], extra=False)
    out += [""]
    out += render("metrics", result["metrics"], extra=True) if result["metrics"] else ["metrics: none (no metrics.json)"]
    return "\n".join(out)
