"""The ``reward`` evaluator: greedy answers to held-out prompts, scored by the recipe's rewards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ftx.api import generate_replies
from ftx_hookspecs import ChatExample, Example, RunContext

from . import RewardEvalOptions
from .combine import build_rewards, total_reward


def prompt_of(example: ChatExample) -> str:
    """The text a reward sees as the prompt: the last user turn."""
    users = [m["content"] for m in example.prompt_messages if m["role"] == "user"]
    return users[-1] if users else ""


class RewardEvaluator:
    """Mean weighted reward, plus the mean of each reward, over the held-out prompts."""

    def __init__(self, options: RewardEvalOptions) -> None:
        self.options = options
        self._rewards: Any = None

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        chats = [e for e in examples if isinstance(e, ChatExample)]
        if self.options.limit:
            chats = chats[: self.options.limit]
        if not chats:
            return {}
        if self._rewards is None:
            self._rewards = build_rewards(ctx, self.options.rewards, self.options.reward_model)
        replies = generate_replies(
            model, ctx.tokenizer, [e.prompt_messages for e in chats],
            max_new_tokens=self.options.max_new_tokens, batch_size=self.options.batch_size,
        )
        totals, means = total_reward(self._rewards, [prompt_of(e) for e in chats], replies, [e.reference for e in chats])
        return {"mean_reward": sum(totals) / len(totals), **{f"mean_{k}": v for k, v in means.items()}}
