"""ftx plugin: reward functions and reward models, for RL objectives and the ``reward`` evaluator.

A reward scores completions: it is called with the prompts (the user's text), the completions and
the reference answers (``None`` where the data has none) and returns one float per completion,
higher is better. A new reward is a few lines in any plugin::

    # my_plugin/__init__.py  (entry point:  [project.entry-points.ftx] my_plugin = "my_plugin")
    from ftx_hookspecs import Options, RewardSpec, hookimpl

    class ShoutOptions(Options):
        bonus: float = 1.0

    class Shout:
        def __init__(self, options: ShoutOptions) -> None:
            self.bonus = options.bonus

        def __call__(self, prompts, completions, references):
            return [self.bonus if c.isupper() else 0.0 for c in completions]

    @hookimpl
    def ftx_register_rewards(register):
        register(RewardSpec("shout", "Rewards answers in capitals.", "my_plugin:Shout", ShoutOptions))

and a recipe uses it as ``rewards = [{use = "shout", bonus = 2.0}]`` in ``[objective] use = "rl"``.

This module also holds :class:`RewardUse` and :func:`check_rewards`, the recipe shape of a list of
weighted rewards shared by the ``rl`` objective and the ``reward`` evaluator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ftx_hookspecs import EvaluatorSpec, Options, RewardSpec, hookimpl
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class ExactMatchRewardOptions(Options):
    """``{use = "exact-match"}``: 1 when the completion equals the reference answer, else 0."""

    normalize: Literal["none", "strip", "lower"] = Field(
        "strip", description="compare as is, with whitespace collapsed, or also lower-cased"
    )


class RegexRewardOptions(Options):
    """``{use = "regex", pattern = "^[a-z ]+$"}``: a reward when the completion matches a pattern."""

    pattern: str = Field(description="a Python regular expression")
    mode: Literal["search", "fullmatch"] = Field("search", description="match anywhere, or the whole completion")
    reward: float = Field(1.0, description="reward when it matches")
    otherwise: float = Field(0.0, description="reward when it does not")


class LengthPenaltyOptions(Options):
    """``{use = "length-penalty", max = 20}``: 0 up to ``max``, then down to -1 at twice ``max``."""

    max: int = Field(gt=0, description="longest completion without penalty")
    unit: Literal["chars", "words"] = Field("chars", description="what ``max`` counts")


class SimilarityOptions(Options):
    """``{use = "similarity"}``: partial credit, the character similarity (0..1) to the reference."""

    normalize: Literal["none", "strip", "lower"] = "strip"


class RewardModelOptions(Options):
    """``{use = "reward-model", path = "runs/rm"}``: the score of a reward model trained by ftx."""

    path: str = Field(description="an earlier run folder (its model/ is used) or a model folder")
    batch_size: int = Field(16, gt=0, description="completions scored at once")
    max_length: int = Field(512, gt=0, description="tokens per prompt + completion")
    render: Literal["auto", "chat", "plain"] = Field(
        "auto", description="how prompt and completion become text; 'auto' follows the reward model's tokenizer"
    )


class RewardUse(BaseModel):
    """One entry of a ``rewards`` list: ``{use = "<reward>", weight = 1.0, <the reward's options>}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    use: str = Field(description="a registered reward (see `ftx plugins`)")
    weight: float = Field(1.0, description="its weight in the summed reward")

    def reward_options(self) -> dict[str, Any]:
        """The keys that belong to the reward itself."""
        return dict(self.model_extra or {})


def check_rewards(rewards: list[RewardUse], info: ValidationInfo) -> list[RewardUse]:
    """Check reward names and their options against the registry when the loader passes it in context.

    Unknown names list the installed rewards; without a registry (a recipe built in code) the check
    happens when the run builds the rewards, before any training.
    """
    registry = (info.context or {}).get("registry") if info is not None else None
    if registry is None:
        return rewards
    from ftx.api import NestedOptionsError, Problem, validate_options

    problems: list[Problem] = []
    for index, entry in enumerate(rewards):
        try:
            found = registry.get("reward", entry.use)
        except Exception as exc:  # noqa: BLE001 - ComponentNotFound carries the user-facing message
            messages = [p.message for p in getattr(exc, "problems", [])] or [str(exc)]
            problems.append(Problem(f"[{index}].use", " ".join(messages)))
            continue
        # the reward's own options, checked like any component's: each problem names its key
        _options, found_problems = validate_options(found.spec.options, entry.reward_options(), f"[{index}]")
        problems.extend(found_problems)
    if problems:
        raise NestedOptionsError(problems)
    return rewards


class RewardEvalOptions(Options):
    """``[[evaluators]] use = "reward"``: mean reward of greedy answers to the held-out prompts."""

    rewards: list[RewardUse] = Field(default_factory=list, description="weighted rewards, as in the rl objective")
    reward_model: str | None = Field(None, description="shorthand for a reward-model entry with this path")
    max_new_tokens: int = Field(32, gt=0, description="generation budget per answer")
    limit: int | None = Field(None, gt=0, description="score only the first N held-out examples")
    batch_size: int = Field(32, gt=0, description="prompts generated at once")

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, value: list[RewardUse], info: ValidationInfo) -> list[RewardUse]:
        return check_rewards(value, info)

    @model_validator(mode="after")
    def _some_reward(self) -> RewardEvalOptions:
        if not self.rewards and not self.reward_model:
            raise ValueError("name at least one reward: rewards = [{use = \"exact-match\"}] or reward_model = \"<run folder>\"")
        return self


REWARDS = (
    RewardSpec("exact-match", "1 when the completion equals the reference answer, else 0.",
               "ftx_rewards.functions:ExactMatchReward", ExactMatchRewardOptions),
    RewardSpec("regex", "A reward when the completion matches a regular expression.",
               "ftx_rewards.functions:RegexReward", RegexRewardOptions),
    RewardSpec("length-penalty", "0 up to a length, then a penalty growing to -1 at twice that length.",
               "ftx_rewards.functions:LengthPenalty", LengthPenaltyOptions),
    RewardSpec("similarity", "Character similarity (0..1) to the reference answer: partial credit.",
               "ftx_rewards.functions:Similarity", SimilarityOptions),
    RewardSpec("reward-model", "The score of a reward model from an earlier run (objective 'reward').",
               "ftx_rewards.model:RewardModelReward", RewardModelOptions),
)


@hookimpl
def ftx_register_rewards(register: Callable[[RewardSpec], None]) -> None:
    for spec in REWARDS:
        register(spec)


@hookimpl
def ftx_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    register(EvaluatorSpec(
        name="reward",
        summary="Mean reward (named rewards or a reward model) of greedy answers to held-out prompts.",
        factory="ftx_rewards.evaluator:RewardEvaluator",
        options=RewardEvalOptions,
    ))
