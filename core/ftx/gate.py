"""The gate: thresholds a recipe requires of a run, checked against ``metrics.json``.

``[evaluation.gate]`` maps a metric to a condition::

    [evaluation.gate]
    "exact-match.exact_match" = ">= 0.8"   # after training (the default phase)
    "loss.perplexity" = "< 3"
    "baseline.exact-match.exact_match" = "<= 0.5"
    forgetting = "<= 10%"                  # general-text perplexity rose by at most 10%

A bare number means ``>=``. TOML's dotted keys (``exact-match.exact_match = ...`` without quotes)
nest tables; both spellings are read the same. The CLI exits with :data:`GATE_EXIT_CODE` naming
every failed threshold, so CI pipelines can rely on the exit status. Imports no torch.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import FtxError, Problem

GATE_EXIT_CODE = 3
PHASES = ("after", "before", "baseline")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}
CONDITION = re.compile(r"^\s*(>=|<=|==|>|<)?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*$")


class GateFailed(FtxError):
    """The run finished but one or more of the recipe's thresholds did not hold."""

    exit_code = GATE_EXIT_CODE


@dataclass(frozen=True)
class Threshold:
    """One gate entry: ``metric`` (e.g. ``exact-match.exact_match``) ``op`` ``value``."""

    metric: str
    op: str
    value: float

    @property
    def condition(self) -> str:
        return f"{self.op} {self.value:g}"


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: TOML dotted keys and quoted keys mean the same metric."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def parse_condition(value: Any) -> tuple[str, float] | None:
    """``">= 0.8"`` → ``(">=", 0.8)``; ``"<= 10%"`` → ``("<=", 0.1)``; a number → ``(">=", n)``; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return ">=", float(value)
    if not isinstance(value, str):
        return None
    match = CONDITION.match(value)
    if not match:
        return None
    op, number, percent = match.groups()
    return op or ">=", float(number) / (100.0 if percent else 1.0)


def parse_gate(table: Mapping[str, Any], evaluator_names: Iterable[str], path: str = "evaluation.gate") -> tuple[list[Threshold], list[Problem]]:
    """Thresholds from ``[evaluation.gate]``, with a problem for each unknown metric or bad condition."""
    names = list(evaluator_names)
    thresholds: list[Threshold] = []
    problems: list[Problem] = []
    for metric, raw in flatten(table).items():
        where = f"{path}.{metric}"
        parsed = parse_condition(raw)
        if parsed is None:
            problems.append(Problem(where, f"expected a condition such as \">= 0.8\", \"< 3\" or \"<= 10%\" (got {raw!r})"))
            continue
        if metric != "forgetting" and _split(metric, names) is None:
            known = ", ".join(f"{n}.<figure>" for n in names) or "no evaluators are selected"
            problems.append(Problem(
                where, f"unknown metric: name an evaluator of the recipe and one of its figures ({known}), "
                "optionally after 'before.' or 'baseline.', or 'forgetting'",
            ))
            continue
        thresholds.append(Threshold(metric, *parsed))
    return thresholds, problems


def _split(metric: str, names: list[str]) -> tuple[str, str, str] | None:
    """``[phase.]evaluator.figure`` → ``(phase, evaluator, figure)``; evaluator names may hold dots."""
    phase = "after"
    head, _, rest = metric.partition(".")
    if head in PHASES and rest:
        phase, metric = head, rest
    for name in sorted(names, key=len, reverse=True):
        if metric.startswith(name + ".") and len(metric) > len(name) + 1:
            return phase, name, metric[len(name) + 1 :]
    return None


def check_gate(thresholds: list[Threshold], metrics: Mapping[str, Any], evaluator_names: Iterable[str]) -> dict[str, Any]:
    """``{"passed": bool, "checks": [...]}``; a metric the run did not produce fails its threshold."""
    names = list(evaluator_names)
    checks = []
    for threshold in thresholds:
        value = _value(threshold.metric, metrics, names)
        passed = value is not None and OPERATORS[threshold.op](value, threshold.value)
        checks.append({"metric": threshold.metric, "condition": threshold.condition, "value": value, "passed": passed})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def _value(metric: str, metrics: Mapping[str, Any], names: list[str]) -> float | None:
    if metric == "forgetting":
        found = (metrics.get("forgetting") or {}).get("increase")
        return float(found) if found is not None else None
    split = _split(metric, names)
    if split is None:
        return None
    phase, name, figure = split
    found = (metrics.get(phase) or {}).get(name, {}).get(figure)
    return float(found) if found is not None else None


def gate_failure(metrics: Mapping[str, Any]) -> GateFailed | None:
    """The error to exit with when ``metrics["gate"]`` records a failed threshold; None when it held."""
    gate = metrics.get("gate")
    if not gate or gate.get("passed", True):
        return None
    lines = []
    for check in gate["checks"]:
        if check["passed"]:
            continue
        got = "not measured" if check["value"] is None else f"got {check['value']:.4g}"
        lines.append(f"  - {check['metric']} {check['condition']}: {got}")
    return GateFailed("gate failed ([evaluation.gate]):\n" + "\n".join(lines))
