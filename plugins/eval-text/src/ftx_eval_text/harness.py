"""A bridge to EleutherAI's lm-evaluation-harness: its tasks on the run's model, where they can run.

The harness is optional (``pip install ftx-eval-text[lm-eval]``) and its tasks read data sets from
the Hugging Face hub. Where the package is missing, or a task's data cannot be loaded (offline,
no cache), the evaluator raises :class:`ftx.evaluation.EvaluationSkipped` with the reason: the run
records the skip in ``metrics.json["skipped"]`` and goes on.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from ftx.api import EvaluationSkipped
from ftx_hookspecs import Example, RunContext

from . import LmEvalOptions

INSTALL_HINT = "pip install 'ftx-eval-text[lm-eval]'"


def harness_available() -> bool:
    """True when the ``lm_eval`` package can be imported."""
    return importlib.util.find_spec("lm_eval") is not None


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """``{"arc_easy": {"acc,none": 0.5, "alias": ...}}`` → ``{"arc_easy.acc": 0.5}`` (numbers only)."""
    figures: dict[str, float] = {}
    for task, values in results.items():
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, _, filter_name = key.partition(",")
            suffix = "" if filter_name in ("", "none") else f"_{filter_name}"
            figures[f"{task}.{metric}{suffix}"] = float(value)
    return figures


class LmEval:
    """Runs the configured harness tasks on the model in memory (no copy written to disk)."""

    def __init__(self, options: LmEvalOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        if not harness_available():
            raise EvaluationSkipped(f"lm-evaluation-harness is not installed ({INSTALL_HINT})")
        try:
            from lm_eval import simple_evaluate
            from lm_eval.models.huggingface import HFLM
        except ImportError as exc:
            raise EvaluationSkipped(f"lm-evaluation-harness cannot be imported: {exc}") from exc
        wrapped = HFLM(pretrained=model, tokenizer=ctx.tokenizer, batch_size=self.options.batch_size)
        try:
            output = simple_evaluate(
                model=wrapped, tasks=list(self.options.tasks), num_fewshot=self.options.num_fewshot,
                limit=self.options.limit, log_samples=False,
            )
        except Exception as exc:  # noqa: BLE001 - the harness raises many kinds when a task's data is unavailable
            raise EvaluationSkipped(
                f"tasks {', '.join(self.options.tasks)} could not run ({type(exc).__name__}: {exc}); "
                "they need their data sets from the Hugging Face hub or its local cache"
            ) from exc
        if not output or not output.get("results"):
            raise EvaluationSkipped("lm-evaluation-harness returned no results")
        return flatten_results(output["results"])
