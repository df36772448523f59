"""ftx plugin: text-similarity evaluators (ROUGE, BLEU, chrF) and an lm-evaluation-harness bridge.

Scoring code lives in :mod:`ftx_eval_text.scorers` and :mod:`ftx_eval_text.harness`, imported
only when a recipe selects one of these evaluators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ftx_hookspecs import EvaluatorSpec, Options, hookimpl
from pydantic import Field


class GeneratedTextOptions(Options):
    """Options shared by evaluators that compare generated answers with the references."""

    max_new_tokens: int = Field(64, gt=0, description="generation budget per answer")
    limit: int | None = Field(None, gt=0, description="score only the first N held-out examples")
    batch_size: int = Field(32, gt=0, description="prompts generated at once")


class RougeOptions(GeneratedTextOptions):
    """``[[evaluators]] use = "rouge"``: mean ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0..1)."""

    stemmer: bool = Field(True, description="Porter-stem words before matching (English)")


class BleuOptions(GeneratedTextOptions):
    """``[[evaluators]] use = "bleu"``: corpus BLEU (sacrebleu, 0..100)."""

    tokenize: Literal["13a", "intl", "char", "none", "zh", "ja-mecab", "ko-mecab", "flores200"] = Field(
        "13a", description="sacrebleu tokenizer: '13a' (its default), 'intl', 'char' for unsegmented scripts, ..."
    )
    lowercase: bool = Field(False, description="compare lower-cased text")


class ChrfOptions(GeneratedTextOptions):
    """``[[evaluators]] use = "chrf"``: corpus chrF (sacrebleu, 0..100); ``word_order = 2`` gives chrF++."""

    word_order: int = Field(0, ge=0, le=2, description="word n-gram order: 0 for chrF, 2 for chrF++")


class LmEvalOptions(Options):
    """``[[evaluators]] use = "lm-eval"``: tasks of EleutherAI's lm-evaluation-harness, where it can run."""

    tasks: list[str] = Field(min_length=1, description="harness task names, e.g. ['hellaswag', 'arc_easy']")
    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples per task; default: the task's own")
    limit: int | None = Field(None, gt=0, description="documents per task (quick checks)")
    batch_size: int = Field(8, gt=0)


@hookimpl
def ftx_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    register(EvaluatorSpec(
        name="rouge",
        summary="ROUGE-1/2/L F-measure of greedy answers against the references (rouge-score).",
        factory="ftx_eval_text.scorers:Rouge",
        options=RougeOptions,
    ))
    register(EvaluatorSpec(
        name="bleu",
        summary="Corpus BLEU of greedy answers against the references (sacrebleu, 0-100).",
        factory="ftx_eval_text.scorers:Bleu",
        options=BleuOptions,
    ))
    register(EvaluatorSpec(
        name="chrf",
        summary="Corpus chrF (or chrF++) of greedy answers against the references (sacrebleu, 0-100).",
        factory="ftx_eval_text.scorers:Chrf",
        options=ChrfOptions,
    ))
    register(EvaluatorSpec(
        name="lm-eval",
        summary="lm-evaluation-harness tasks; skipped with the reason where the harness or its data is missing.",
        factory="ftx_eval_text.harness:LmEval",
        options=LmEvalOptions,
    ))
