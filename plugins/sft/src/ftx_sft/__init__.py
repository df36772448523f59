"""ftx plugin: the ``sft`` objective (loss on assistant turns), ``text`` (loss on every token) and
``classify`` (a classification head on labelled texts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ftx_hookspecs import ObjectiveSpec, Options, hookimpl
from pydantic import Field


class SFTOptions(Options):
    """``[objective] use = "sft"``."""

    train_on: Literal["assistant", "last", "all"] = Field(
        "assistant",
        description="which tokens take loss: every assistant turn, the last one only, or the whole conversation",
    )


class TextOptions(Options):
    """``[objective] use = "text"``: continued pre-training, every token trains."""


class ClassifyOptions(Options):
    """``[objective] use = "classify"``: a new classification head over the model, one output per label."""

    class_weights: Literal["none", "balanced"] = Field(
        "none",
        description="'balanced' weighs each class's loss by n / (classes x its count), so rare classes count as "
        "much as common ones (e.g. spam at 13%)",
    )


@hookimpl
def ftx_register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    register(ObjectiveSpec(
        name="sft",
        summary="Supervised fine-tuning on conversations or instruction pairs; loss on the assistant's turns.",
        factory="ftx_sft.objective:SFTObjective",
        options=SFTOptions,
        example_kind="chat",
    ))
    register(ObjectiveSpec(
        name="text",
        summary="Continued pre-training: next-token loss on every token of plain text.",
        factory="ftx_sft.objective:TextObjective",
        options=TextOptions,
        example_kind="text",
    ))
    register(ObjectiveSpec(
        name="classify",
        summary="Text classification: a sequence-classification head with one output per label, cross-entropy loss.",
        factory="ftx_sft.classify:ClassifyObjective",
        options=ClassifyOptions,
        example_kind="classification",
        model_head="sequence-classification",
    ))
