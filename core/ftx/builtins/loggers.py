"""Built-in plugin: drives the loggers a recipe selects with ``[[loggers]] use = "..."``.

A logger plugin only registers a :class:`~ftx_hookspecs.LoggerSpec`; this plugin builds the
selected loggers when a run starts (importing their heavy code only then) and forwards the
lifecycle hooks to them. A recipe without ``[[loggers]]`` builds and imports nothing.

Tracking must never cost a training run: an exception in a logger is reported once on the
console and that logger is switched off for the rest of the run.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

from ftx_hookspecs import RunContext, hookimpl

_ACTIVE: dict[int, list[tuple[str, Any]]] = {}
"""Loggers of each run in progress, keyed by the run context's id."""


def _call(run: RunContext, name: str, logger: Any, method: str, *args: Any) -> bool:
    """Call one logger method; on error, say so and return False (the logger is then dropped)."""
    func = getattr(logger, method, None)
    if func is None:
        return True
    try:
        func(run, *args)
    except Exception as exc:  # noqa: BLE001 - a tracker's failure must not fail the run
        last = traceback.format_exception_only(exc)[-1].strip()
        run.echo(f"logger {name!r} failed in {method} and is switched off for this run: {last}")
        return False
    return True


def active_loggers(run: RunContext) -> list[tuple[str, Any]]:
    """The ``(name, logger)`` pairs working for ``run`` (empty when its recipe selects none)."""
    return list(_ACTIVE.get(id(run), []))


@hookimpl
def ftx_run_start(run: RunContext) -> None:
    """Build the recipe's loggers and let each open its tracker."""
    selected = getattr(getattr(run, "recipe_obj", None), "loggers", None) or []
    if not selected:
        return
    loggers: list[tuple[str, Any]] = []
    for sel in selected:
        try:
            logger = sel.build()
        except Exception as exc:  # noqa: BLE001 - e.g. the tracking library is not installed
            run.echo(f"logger {sel.name!r} could not be built and is switched off for this run: "
                     f"{type(exc).__name__}: {exc}")
            continue
        if _call(run, sel.name, logger, "start"):
            loggers.append((sel.name, logger))
    _ACTIVE[id(run)] = loggers


@hookimpl
def ftx_log_metrics(run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
    """Forward training figures to every working logger."""
    loggers = _ACTIVE.get(id(run))
    if not loggers:
        return
    _ACTIVE[id(run)] = [(n, lg) for n, lg in loggers if _call(run, n, lg, "log_metrics", step, metrics)]


@hookimpl
def ftx_run_end(run: RunContext, metrics: Mapping[str, Any] | None, error: BaseException | None) -> None:
    """Give every working logger the final figures (or the error), then forget the run."""
    for name, logger in _ACTIVE.pop(id(run), []):
        _call(run, name, logger, "end", metrics, error)
