"""ftx plugin: basic evaluators (exact-match, loss/perplexity, accuracy, macro F1, tool calls). Scoring code lives in
:mod:`ftx_eval_basic.evaluators` and :mod:`ftx_eval_basic.toolcall`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ftx_hookspecs import EvaluatorSpec, Options, hookimpl
from pydantic import Field


class ExactMatchOptions(Options):
    """``[[evaluators]] use = "exact-match"``."""

    max_new_tokens: int = Field(64, gt=0, description="generation budget per answer")
    normalize: Literal["none", "strip", "lower"] = Field(
        "strip", description="compare answers as they are, stripped of outer whitespace, or also lower-cased"
    )
    limit: int | None = Field(None, gt=0, description="score only the first N held-out examples")
    batch_size: int = Field(32, gt=0, description="prompts generated at once")


class LossOptions(Options):
    """``[[evaluators]] use = "loss"``: mean loss and perplexity on the held-out split's trained tokens."""

    limit: int | None = Field(None, gt=0, description="score only the first N held-out examples")
    batch_size: int = Field(16, gt=0)


class ClassificationOptions(Options):
    """``[[evaluators]] use = "accuracy"`` or ``"f1"``: predicted label vs reference label.

    Chat examples are answered by greedy generation (the reply is the label); classification
    examples on a sequence-classification model are predicted from its logits.
    """

    max_new_tokens: int = Field(64, gt=0, description="generation budget per answer (chat examples)")
    normalize: Literal["none", "strip", "lower"] = Field("strip", description="how labels are compared")
    limit: int | None = Field(None, gt=0, description="score only the first N held-out examples")
    batch_size: int = Field(32, gt=0, description="examples scored at once")


class ToolCallOptions(Options):
    """``[[evaluators]] use = "tool-call"``: the greedy reply at each held-out tool call, parsed as calls."""

    max_new_tokens: int = Field(128, gt=0, description="generation budget per call")
    limit: int | None = Field(None, gt=0, description="score only the first N held-out calls")
    batch_size: int = Field(32, gt=0, description="prompts generated at once")


@hookimpl
def ftx_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    register(EvaluatorSpec(
        name="exact-match",
        summary="Share of held-out prompts whose greedy answer equals the reference.",
        factory="ftx_eval_basic.evaluators:ExactMatch",
        options=ExactMatchOptions,
    ))
    register(EvaluatorSpec(
        name="loss",
        summary="Mean loss and perplexity on the held-out split (the tokens that train).",
        factory="ftx_eval_basic.evaluators:Loss",
        options=LossOptions,
    ))
    register(EvaluatorSpec(
        name="accuracy",
        summary="Share of held-out examples whose predicted label (generated or classified) is the reference.",
        factory="ftx_eval_basic.evaluators:Accuracy",
        options=ClassificationOptions,
    ))
    register(EvaluatorSpec(
        name="f1",
        summary="Macro-averaged F1 over the reference labels (classification-style answers).",
        factory="ftx_eval_basic.evaluators:MacroF1",
        options=ClassificationOptions,
    ))
    register(EvaluatorSpec(
        name="tool-call",
        summary="Share of held-out tool calls made as valid JSON, naming the right function, with the right arguments.",
        factory="ftx_eval_basic.toolcall:ToolCall",
        options=ToolCallOptions,
    ))
