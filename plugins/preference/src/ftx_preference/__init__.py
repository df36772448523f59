"""ftx plugin: preference tuning. Objectives ``reward`` (a reward model trained on preference pairs),
``dpo`` (direct preference optimisation on TRL's ``DPOTrainer``), ``kto`` (Kahneman-Tversky
optimisation on TRL's ``KTOTrainer``), the reference-free ``orpo`` (TRL's ``ORPOTrainer``), ``cpo``
and ``simpo`` (TRL's ``CPOTrainer``), and the ``preference`` evaluator that scores either kind of
model on held-out pairs before and after training.

``[data] packing = true`` runs the pairwise objectives (dpo, orpo, cpo, simpo) padding-free
(:mod:`ftx_preference.packing`); ``reward`` and ``kto`` refuse it with a recipe error.

Heavy code lives in :mod:`ftx_preference.reward`, :mod:`ftx_preference.dpo`, :mod:`ftx_preference.kto`,
:mod:`ftx_preference.contrastive` and :mod:`ftx_preference.evaluator`, imported only when a recipe selects them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from ftx.errors import Problem, RecipeError
from ftx_hookspecs import EvaluatorSpec, ObjectiveSpec, Options, hookimpl
from pydantic import Field, field_validator

DPO_LOSSES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)
"""The loss variants of TRL's DPOTrainer (1.x); several can be combined with ``loss_weights``."""

Render = Literal["auto", "chat", "plain"]

PACKED_OBJECTIVES = ("dpo", "orpo", "cpo", "simpo")
"""The objectives of this plugin that ``[data] packing = true`` runs padding-free."""
UNPACKED_OBJECTIVES = {
    "reward": "it scores each whole sequence with a classification head",
    "kto": "its KL estimate pairs each answer with a neighbour's in the padded batch",
}
"""The objectives of this plugin that refuse ``[data] packing = true``, and why."""


def packing_problem(objective: str, packing: bool) -> Problem | None:
    """The recipe problem of ``data.packing = true`` with an objective of this plugin that cannot pack."""
    if not packing or objective not in UNPACKED_OBJECTIVES:
        return None
    return Problem("data.packing", f"the {objective} objective does not support packing "
                                   f"({UNPACKED_OBJECTIVES[objective]}): set data.packing = false, or use one of "
                                   f"{', '.join(PACKED_OBJECTIVES)}, which pack chosen and rejected answers")


def refuse_packing(ctx: Any, objective: str) -> None:
    """Raise the recipe error of :func:`packing_problem` for a run (recipes built in code skip ``ftx validate``)."""
    problem = packing_problem(objective, bool(getattr(getattr(ctx, "data_config", None), "packing", False)))
    if problem is not None:
        raise RecipeError(problem)


def max_prompt_length_field() -> Any:
    """The ``max_prompt_length`` option every pairwise objective has (one definition, one help text)."""
    return Field(None, gt=0, description="prompts longer than this many tokens are cut from the start; "
                                         "default: half of data.max_length")


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
    max_prompt_length: int | None = max_prompt_length_field()

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
    max_prompt_length: int | None = max_prompt_length_field()

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: the reference model (:mod:`ftx_preference.memory`)."""
        from .memory import kto_plan

        return kto_plan(self, shape, plan)


class ORPOOptions(Options):
    """``[objective] use = "orpo"``: odds-ratio preference optimisation, SFT and preference in one stage.

    The loss is the SFT loss on the chosen answers plus ``beta`` times -log sigmoid of the log odds
    ratio odds(chosen) / odds(rejected). No reference model is kept, so it costs about what SFT costs
    (two answers per example); start from a base model, no SFT stage first.
    """

    beta: float = Field(0.1, gt=0, description="weight of the odds-ratio term beside the SFT loss (lambda in the paper)")
    max_prompt_length: int | None = max_prompt_length_field()

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: no reference model, two sequences per example (:mod:`ftx_preference.memory`)."""
        from .memory import reference_free_plan

        return reference_free_plan("orpo", plan)


class CPOOptions(Options):
    """``[objective] use = "cpo"``: contrastive preference optimisation, DPO without a reference model.

    The loss is a preference loss on the policy's own log-probabilities, -log sigmoid(beta * (log
    p(chosen) - log p(rejected))) for ``sigmoid``, plus ``sft_weight`` times the SFT loss on the chosen
    answers, which keeps the model from drifting where a reference would.
    """

    beta: float = Field(0.1, gt=0, description="temperature of the preference loss; higher separates answers harder")
    loss_type: Literal["sigmoid", "hinge", "ipo"] = Field("sigmoid", description="preference loss on the log-prob gap")
    sft_weight: float = Field(1.0, ge=0, description="weight of the SFT loss on the chosen answers (cpo_alpha)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="sigmoid loss: assumed share of flipped labels")
    max_prompt_length: int | None = max_prompt_length_field()

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: no reference model, two sequences per example (:mod:`ftx_preference.memory`)."""
        from .memory import reference_free_plan

        return reference_free_plan("cpo", plan)


class SimPOOptions(Options):
    """``[objective] use = "simpo"``: simple preference optimisation, reference-free and length-normalised.

    The implicit reward of an answer is ``beta`` times its mean token log-probability (so long answers
    win no advantage by length); the loss is -log sigmoid(reward(chosen) - reward(rejected) - ``gamma``),
    asking for a margin of at least ``gamma``. ``sft_weight > 0`` adds the SFT loss on the chosen
    answers (CPO-SimPO).
    """

    beta: float = Field(2.0, gt=0, description="scale of the length-normalised reward (the paper uses 2 to 10)")
    gamma: float = Field(1.0, ge=0, description="target reward margin between chosen and rejected (the paper: 0.5 to 1.6)")
    sft_weight: float = Field(0.0, ge=0, description="weight of the SFT loss on the chosen answers; > 0 is CPO-SimPO")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="assumed share of flipped labels")
    max_prompt_length: int | None = max_prompt_length_field()

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: no reference model, two sequences per example (:mod:`ftx_preference.memory`)."""
        from .memory import reference_free_plan

        return reference_free_plan("simpo", plan)


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
def ftx_recipe_loaded(recipe: Mapping[str, Any], path: Path | None) -> None:
    """Refuse ``data.packing = true`` with reward or kto when the recipe is read (``ftx run``, ``ftx validate``)."""
    stages = recipe.get("stages") or [recipe]
    problems = []
    for stage in stages:
        problem = packing_problem(stage.get("objective", {}).get("use", ""), bool(stage.get("data", {}).get("packing")))
        if problem is not None:
            where = f"stage {stage['name']}: " if "name" in stage else ""
            problems.append(Problem(problem.path, where + problem.message))
    if problems:
        raise RecipeError(problems, str(path) if path else None)


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
    register(ObjectiveSpec(
        name="orpo",
        summary="Odds-ratio preference optimisation (TRL ORPOTrainer): SFT + preference in one stage, no reference.",
        factory="ftx_preference.contrastive:ORPOObjective",
        options=ORPOOptions,
        example_kind="preference",
    ))
    register(ObjectiveSpec(
        name="cpo",
        summary="Contrastive preference optimisation (TRL CPOTrainer): DPO-style loss without a reference, plus SFT.",
        factory="ftx_preference.contrastive:CPOObjective",
        options=CPOOptions,
        example_kind="preference",
    ))
    register(ObjectiveSpec(
        name="simpo",
        summary="SimPO (TRL CPOTrainer): reference-free, length-normalised reward with a target margin.",
        factory="ftx_preference.contrastive:SimPOObjective",
        options=SimPOOptions,
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
