"""ftx plugin: the ``sft`` objective (loss on assistant turns) and ``text`` (loss on every token)."""

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
