"""ftx plugin: online reinforcement learning from rewards: ``rl`` (TRL's GRPO), ``rloo`` (TRL's RLOO) and
``ppo`` (ftx's own PPO with a value head, as a transformers Trainer).

For each prompt the model samples ``num_generations`` answers; each answer is scored by the
recipe's rewards (from the reward registry: rule rewards such as ``exact-match``, or a reward model
trained by an earlier run); answers better than their group's mean (``rl``) or than the mean of the
other answers (``rloo``), or than the value head expected (``ppo``), are made more likely::

    [objective]
    use = "rl"
    rewards = [{use = "exact-match"}, {use = "length-penalty", max = 20, weight = 0.5}]
    reward_model = "runs/reward"        # optional: adds {use = "reward-model", path = ...}

The heavy code lives in :mod:`ftx_rl.objective`, :mod:`ftx_rl.rloo` and :mod:`ftx_rl.ppo`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from ftx_hookspecs import ObjectiveSpec, Options, hookimpl
from ftx_rewards import RewardUse, check_rewards
from pydantic import Field, ValidationInfo, field_validator, model_validator


class RewardSourceOptions(Options):
    """What every RL objective (``rl``, ``rloo``, ``ppo``) is guided by: registered rewards and/or a reward model."""

    objective: ClassVar[str] = "rl"
    """The objective's name in messages and memory-plan notes."""

    rewards: list[RewardUse] = Field(
        default_factory=list, description="weighted rewards: [{use = 'exact-match', weight = 1.0, <its options>}]"
    )
    reward_model: str | None = Field(
        None, description="a run folder of the 'reward' objective (or 'stage:<name>' in a pipeline); adds it as a reward"
    )

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, value: list[RewardUse], info: ValidationInfo) -> list[RewardUse]:
        return check_rewards(value, info)

    @model_validator(mode="after")
    def _some_reward(self) -> RewardSourceOptions:
        if not self.rewards and not self.reward_model:
            raise ValueError("name at least one reward: rewards = [{use = \"exact-match\"}] or reward_model = \"<run folder>\"")
        return self

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: the reference model with ``beta > 0`` (:mod:`ftx_rl.memory`)."""
        from .memory import rl_plan

        return rl_plan(self, shape, plan, self.objective)


class SampledRLOptions(RewardSourceOptions):
    """What the group-sampling objectives (``rl``, ``rloo``) read besides the rewards: how answers are sampled.
    ``[train] batch_size`` counts completions (prompts x num_generations)."""

    num_generations: int = Field(4, ge=2, description="answers sampled per prompt; advantages compare within them")
    max_completion_length: int = Field(16, gt=0, description="tokens per sampled answer")
    temperature: float = Field(1.0, gt=0, description="sampling temperature; higher explores more")
    beta: float = Field(0.0, ge=0, description="KL penalty towards the starting model; 0 keeps no reference model")
    num_iterations: int = Field(1, ge=1, description="optimisation passes over each batch of samples")


class RLOptions(SampledRLOptions):
    """``[objective] use = "rl"`` (GRPO). ``[train] batch_size`` counts completions (prompts x num_generations)."""

    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        "dapo", description="how token losses are aggregated (TRL GRPO loss types)"
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the reward std of the group, the batch, or not at all"
    )


class RLOOOptions(SampledRLOptions):
    """``[objective] use = "rloo"``: REINFORCE leave-one-out. Each answer's baseline is the mean reward of the
    other answers to the same prompt (unbiased, no value model); the KL to the starting model is part of
    the reward. ``[train] batch_size`` counts completions (prompts x num_generations)."""

    objective: ClassVar[str] = "rloo"
    beta: float = Field(0.05, ge=0, description="KL penalty towards the starting model, taken from the reward; "
                                                "0 keeps no reference model")
    normalize_advantages: bool = Field(False, description="scale each batch's advantages to mean 0 and std 1")


class PPOOptions(RewardSourceOptions):
    """``[objective] use = "ppo"``: proximal policy optimisation with a value head, the classic RLHF stage.

    One answer is sampled per prompt and scored by the rewards (typically ``reward_model``, the
    reward stage of the pipeline). A value head on the policy's last hidden state estimates the
    return at every answer token; advantages come from GAE over per-token rewards (the score at the
    answer's last token, minus ``beta`` x the per-token KL to the starting model). Each batch of
    answers is trained on ``num_iterations`` times with the clipped policy loss and the clipped value
    loss. ``[train] batch_size`` counts prompts (one answer each); single process only.
    """

    objective: ClassVar[str] = "ppo"

    max_completion_length: int = Field(16, gt=0, description="tokens per sampled answer")
    temperature: float = Field(1.0, gt=0, description="sampling temperature; higher explores more")
    beta: float = Field(0.05, ge=0, description="per-token KL penalty towards the starting model, taken from the "
                                                "reward; 0 keeps no reference model")
    num_iterations: int = Field(4, ge=1, description="optimizer steps on each batch of answers (PPO epochs); "
                                                     "clipping matters from the second on")
    clip_range: float = Field(0.2, gt=0, lt=1, description="policy ratio clipped to 1 +- clip_range")
    value_clip_range: float = Field(0.2, gt=0, description="value estimates move at most this far from the "
                                                           "rollout's in the value loss")
    value_coef: float = Field(0.1, ge=0, description="weight of the value loss beside the policy loss")
    gamma: float = Field(1.0, gt=0, le=1, description="discount over answer tokens")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda: 1 is Monte Carlo returns, 0 one-step TD")

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: the reference model with ``beta > 0`` (:mod:`ftx_rl.memory`); the value head is one
        vector of the hidden size, too small to count."""
        from .memory import rl_plan

        return rl_plan(self, shape, plan, self.objective)


@hookimpl
def ftx_register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    register(ObjectiveSpec(
        name="rl",
        summary="Online RL (GRPO) on prompts, guided by registered rewards or a reward model.",
        factory="ftx_rl.objective:RLObjective",
        options=RLOptions,
        example_kind="chat",
    ))
    register(ObjectiveSpec(
        name="rloo",
        summary="Online RL (RLOO, TRL RLOOTrainer): leave-one-out baselines, guided by registered rewards or a reward model.",
        factory="ftx_rl.rloo:RLOOObjective",
        options=RLOOOptions,
        example_kind="chat",
    ))
    register(ObjectiveSpec(
        name="ppo",
        summary="Online RL (PPO): policy + value head, GAE, clipped losses, KL to the start; against rewards or a reward model.",
        factory="ftx_rl.ppo:PPOObjective",
        options=PPOOptions,
        example_kind="chat",
    ))
