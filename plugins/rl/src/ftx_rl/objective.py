"""The ``rl`` objective on TRL's GRPOTrainer, with ftx rewards as its reward functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ftx.errors import DataError, RecipeError
from ftx_hookspecs import ChatExample, RunContext, TrainResult
from ftx_rewards.combine import WeightedReward, build_rewards

from . import RLOptions, SampledRLOptions


def _text(item: Any) -> str:
    """A prompt or completion as TRL passes it (a string or a list of messages) -> the last message's text."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item:
        users = [m["content"] for m in item if m.get("role") in ("user", "assistant")]
        return users[-1] if users else str(item[-1].get("content", ""))
    return ""


def trl_reward_function(reward: WeightedReward) -> Any:
    """Adapt an ftx reward ``(prompts, completions, references) -> floats`` to TRL's reward-function call."""

    def reward_fn(prompts: Sequence[Any], completions: Sequence[Any], reference: Sequence[str | None] | None = None,
                  **_: Any) -> list[float]:
        refs = list(reference) if reference is not None else [None] * len(completions)
        return reward([_text(p) for p in prompts], [_text(c) for c in completions], refs)

    reward_fn.__name__ = reward.name
    return reward_fn


def prompt_rows(ctx: RunContext, objective: str) -> list[dict[str, Any]]:
    """The run's training prompts as TRL rows: the prompt turns, and the answer as ``reference`` for the rewards."""
    chats = [e for e in ctx.data.train if isinstance(e, ChatExample)]
    if not chats:
        raise DataError(f"the {objective} objective needs prompts: a chat format such as alpaca (the answer is the reference)")
    return [{"prompt": list(e.prompt_messages), "reference": e.reference} for e in chats]


def train_sampled(model: Any, ctx: RunContext, opts: SampledRLOptions, config_class: Any, trainer_class: Any,
                  **settings: Any) -> TrainResult:
    """Train ``model`` with a TRL sampling trainer (GRPO, RLOO) on the run's prompts and the recipe's rewards.

    ``settings`` are the trainer-specific fields of ``config_class`` (loss type, advantage scaling, ...).
    """
    name = opts.objective
    rewards = build_rewards(ctx, opts.rewards, opts.reward_model)  # unknown names fail here, before training
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()  # TRL's dataset preparation; ftx prints its own progress

    per_step = ctx.train.batch_size * ctx.train.grad_accum
    if per_step % opts.num_generations:
        raise RecipeError(
            f"train.batch_size x train.grad_accum ({per_step}) must be a multiple of objective.num_generations "
            f"({opts.num_generations}): each step trains on whole groups of answers to the same prompt"
        )
    rows = prompt_rows(ctx, name)
    args = ctx.training_arguments(
        config_class,
        num_generations=opts.num_generations,
        max_completion_length=opts.max_completion_length,
        temperature=opts.temperature,
        beta=opts.beta,
        num_iterations=opts.num_iterations,
        reward_weights=[r.weight for r in rewards],
        eval_strategy="no",
        remove_unused_columns=False,
        **settings,
    )
    trainer = trainer_class(
        model=model,
        reward_funcs=[trl_reward_function(r) for r in rewards],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=ctx.tokenizer,
    )
    ctx.echo(f"  {name}: {len(rows)} prompts, {opts.num_generations} answers each, rewards "
             + ", ".join(f"{r.name} x{r.weight:g}" for r in rewards))
    result = ctx.fit(trainer)
    return sampled_reward_figures(result, len(rows))


def sampled_reward_figures(result: TrainResult, prompts: int) -> TrainResult:
    """Add the prompt count and the first and last logged mean reward of the sampled answers."""
    logged = [h["reward"] for h in result.history if "reward" in h]
    result.metrics["prompts"] = float(prompts)
    if logged:
        result.metrics["first_sampled_reward"] = float(logged[0])
        result.metrics["last_sampled_reward"] = float(logged[-1])
    return result


class RLObjective:
    """Samples answers, scores them with the rewards, and updates the policy with GRPO."""

    def __init__(self, options: RLOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from trl import GRPOConfig, GRPOTrainer

        opts = self.options
        return train_sampled(model, ctx, opts, GRPOConfig, GRPOTrainer,
                             loss_type=opts.loss_type, scale_rewards=opts.scale_rewards)
