"""ftx-answer-loss: an objective written from docs/plugins/tutorial.md alone (a test fixture)."""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import ObjectiveSpec, Options, hookimpl


class AnswerLossOptions(Options):
    """``[objective] use = "answer-loss"``: no options."""


@hookimpl
def ftx_register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    register(ObjectiveSpec(
        name="answer-loss",
        summary="Next-token loss on the answers of chat examples.",
        factory="ftx_answer_loss.objective:AnswerLoss",
        options=AnswerLossOptions,
        example_kind="chat",
    ))
