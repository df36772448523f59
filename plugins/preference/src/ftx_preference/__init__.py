"""ftx plugin: preference tuning. Objectives ``reward`` (a reward model trained on preference pairs),
``dpo`` (direct preference optimisation on TRL's ``DPOTrainer``) and ``kto`` (Kahneman-Tversky
optimisation on TRL's ``KTOTrainer``), and the ``preference`` evaluator that scores either kind of
model on held-out pairs before and after training.

Heavy code lives in :mod:`ftx_preference.reward`, :mod:`ftx_preference.dpo`,
:mod:`ftx_preference.kto` and :mod:`ftx_preference.evaluator`, imported only when a recipe selects them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ftx_hookspecs import EvaluatorSpec, ObjectiveSpec, Options, hookimpl
from pydantic import Field, field_validator

DPO_LOSSES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)
"""The loss variants of TRL's DPOTrainer (1.x); several can be combined with ``loss_weights``."""

Render = Literal["auto", "chat", "plain"]
RENDER_HELP = ("how prompt and answer become text: 'chat' through the chat template (decoders), 'plain' as a text "
               "pair (encoders such as BERT/MiniLM); 'auto' picks 'plain' for tokenizers with [CLS]/[SEP]")


class RewardOptions(Options):
    """``[objective] use = "reward"``: a sequence-classification model with one output, trained so that
    r(prompt, chosen) > r(prompt, rejected) with the pairwise loss -log sigmoid(r_chosen - r_rejected)."""

    render: Render = Field("auto", description=RENDER_HELP)
    center_rewards: float | None = Field(
        None, ge=0, description="weight of a penalty on the mean squared reward, keeping rewards near 0 (e.g. 0.01)"
    )


class DPOOptions(Options):
    """``[objective] use = "dpo"``: direct preference optimisation against a frozen reference.

    The reference is the model before training: with an adapter method (lora) TRL keeps a frozen
    copy of the adapter only, the base weights are shared; with ``precompute_ref_log_probs`` the
    reference log-probs are computed once before training and no reference model is kept; with
    ``full`` and no precompute a frozen copy of the model is kept (twice the weights' memory).
    """

    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference; higher stays closer")
    loss_type: str | list[str] = Field(
        "sigmoid", description="DPO loss variant(s): " + ", ".join(DPO_LOSSES) + "; a list combines them"
    )
    loss_weights: list[float] | None = Field(None, description="weights of combined loss types, one per loss_type")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="robust/EXO: assumed share of flipped labels")
    precompute_ref_log_probs: bool = Field(
        False, description="compute the reference log-probs once before training; no reference model kept in memory"
    )
    max_prompt_length: int | None = Field(
        None, gt=0, description="prompts longer than this many tokens are cut from the start; default: half of data.max_length"
    )

    @field_validator("loss_type")
    @classmethod
    def _known_loss(cls, value: str | list[str]) -> str | list[str]:
        for name in [value] if isinstance(value, str) else value:
            if name not in DPO_LOSSES:
                raise ValueError(f"unknown DPO loss {name!r}; choose from {', '.join(DPO_LOSSES)}")
        return value

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: the reference model and two sequences per example (:mod:`ftx_preference.memory`)."""
        from .memory import dpo_plan

        return dpo_plan(self, shape, plan)


class KTOOptions(Options):
    """``[objective] use = "kto"``: Kahneman-Tversky optimisation, which learns from answers marked good or
    bad one at a time rather than from pairs. Each preference pair gives two such answers: the chosen one
    desirable, the rejected one undesirable. The reference is kept as for ``dpo``.
    """

    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference; higher stays closer")
    loss_type: Literal["kto", "apo_zero_unpaired"] = Field("kto", description="KTO's loss, or unpaired APO-zero")
    desirable_weight: float = Field(1.0, gt=0, description="weight of the desirable answers' loss")
    undesirable_weight: float = Field(1.0, gt=0, description="weight of the undesirable answers' loss")
    precompute_ref_log_probs: bool = Field(
        False, description="compute the reference log-probs once before training; no reference model kept in memory"
    )
    max_prompt_length: int | None = Field(
        None, gt=0, description="prompts longer than this many tokens are cut from the start; default: half of data.max_length"
    )

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: the reference model (:mod:`ftx_preference.memory`)."""
        from .memory import kto_plan

        return kto_plan(self, shape, plan)


class PreferenceEvalOptions(Options):
    """``[[evaluators]] use = "preference"``: how strongly a model prefers the chosen answers.

    For a language model: the log-probability margin log p(chosen) - log p(rejected) of the answer
    tokens, and the share of pairs where it is positive. For a reward model: the reward margin and
    the pairwise accuracy.
    """

    limit: int | None = Field(None, gt=0, description="score only the first N held-out pairs")
    batch_size: int = Field(16, gt=0)
    render: Render = Field("auto", description=RENDER_HELP + " (reward models only)")


@hookimpl
def ftx_register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    register(ObjectiveSpec(
        name="reward",
        summary="Reward model: one score per answer, trained on preference pairs; reports pairwise accuracy.",
        factory="ftx_preference.reward:RewardObjective",
        options=RewardOptions,
        example_kind="preference",
        model_head="sequence-classification",
    ))
    register(ObjectiveSpec(
        name="dpo",
        summary="Direct preference optimisation (TRL DPOTrainer): sigmoid, ipo, hinge, robust, ... losses.",
        factory="ftx_preference.dpo:DPOObjective",
        options=DPOOptions,
        example_kind="preference",
    ))
    register(ObjectiveSpec(
        name="kto",
        summary="Kahneman-Tversky optimisation (TRL KTOTrainer): each pair's answers as desirable / undesirable.",
        factory="ftx_preference.kto:KTOObjective",
        options=KTOOptions,
        example_kind="preference",
    ))


@hookimpl
def ftx_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    register(EvaluatorSpec(
        name="preference",
        summary="Held-out preference pairs: chosen-minus-rejected margin and the share of pairs preferred.",
        factory="ftx_preference.evaluator:PreferenceEvaluator",
        options=PreferenceEvalOptions,
    ))
