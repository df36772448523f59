"""ftx plugin: the ``rl`` objective, online reinforcement learning from rewards (TRL's GRPO).

For each prompt the model samples ``num_generations`` answers; each answer is scored by the
recipe's rewards (from the reward registry: rule rewards such as ``exact-match``, or a reward model
trained by an earlier run); answers better than their group's mean are made more likely::

    [objective]
    use = "rl"
    rewards = [{use = "exact-match"}, {use = "length-penalty", max = 20, weight = 0.5}]
    reward_model = "runs/reward"        # optional: adds {use = "reward-model", path = ...}

The heavy code lives in :mod:`ftx_rl.objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ftx_hookspecs import ObjectiveSpec, Options, hookimpl
from ftx_rewards import RewardUse, check_rewards
from pydantic import Field, ValidationInfo, field_validator, model_validator


class RLOptions(Options):
    """``[objective] use = "rl"``. ``[train] batch_size`` counts completions (prompts x num_generations)."""

    rewards: list[RewardUse] = Field(
        default_factory=list, description="weighted rewards: [{use = 'exact-match', weight = 1.0, <its options>}]"
    )
    reward_model: str | None = Field(
        None, description="a run folder of the 'reward' objective (or 'stage:<name>' in a pipeline); adds it as a reward"
    )
    num_generations: int = Field(4, ge=2, description="answers sampled per prompt; advantages compare within them")
    max_completion_length: int = Field(16, gt=0, description="tokens per sampled answer")
    temperature: float = Field(1.0, gt=0, description="sampling temperature; higher explores more")
    beta: float = Field(0.0, ge=0, description="KL penalty towards the starting model; 0 keeps no reference model")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        "dapo", description="how token losses are aggregated (TRL GRPO loss types)"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the reward std of the group, the batch, or not at all"
    )
    num_iterations: int = Field(1, ge=1, description="optimisation passes over each batch of samples")

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, value: list[RewardUse], info: ValidationInfo) -> list[RewardUse]:
        return check_rewards(value, info)

    @model_validator(mode="after")
    def _some_reward(self) -> RLOptions:
        if not self.rewards and not self.reward_model:
            raise ValueError("name at least one reward: rewards = [{use = \"exact-match\"}] or reward_model = \"<run folder>\"")
        return self

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: the reference model with ``beta > 0`` (:mod:`ftx_rl.memory`)."""
        from .memory import rl_plan

        return rl_plan(self, shape, plan)


@hookimpl
def ftx_register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    register(ObjectiveSpec(
        name="rl",
        summary="Online RL (GRPO) on prompts, guided by registered rewards or a reward model.",
        factory="ftx_rl.objective:RLObjective",
        options=RLOptions,
        example_kind="chat",
    ))
