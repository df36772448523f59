"""The ``preference`` evaluator: does the model prefer the chosen answers of held-out pairs?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ftx_hookspecs import ChatExample, Example, PreferenceExample, RunContext

from . import PreferenceEvalOptions


def is_reward_model(model: Any) -> bool:
    """True for sequence-classification models (reward models), including peft-wrapped ones."""
    return type(model).__name__.endswith("ForSequenceClassification")


def answer_logprobs(model: Any, tokenizer: Any, prompts: Sequence[Sequence[dict[str, str]]], answers: Sequence[str],
                    max_length: int, batch_size: int = 16) -> list[float]:
    """Summed log-probability of each answer's tokens (its end-of-turn token included) given its prompt."""
    import torch
    from ftx.api import IGNORE_INDEX, CausalLMCollator, tokenize_chat

    from .encoding import fit_prompt

    items = []
    for prompt, answer in zip(prompts, answers):
        turns = fit_prompt(tokenizer, prompt, max_length // 2)
        tok = tokenize_chat(tokenizer, ChatExample([*turns, {"role": "assistant", "content": answer}]), "last")
        items.append({"input_ids": tok.input_ids[:max_length], "labels": tok.labels[:max_length]})
    collate = CausalLMCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = {k: v.to(device) for k, v in collate(items[start : start + batch_size]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            logps = torch.log_softmax(logits[:, :-1], dim=-1)
            labels = batch["labels"][:, 1:]
            mask = labels != IGNORE_INDEX
            picked = logps.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            out.extend(float(x) for x in (picked * mask).sum(-1))
    model.train(was_training)
    return out


class PreferenceEvaluator:
    """``margin`` (chosen minus rejected) and ``accuracy`` (share of pairs with a positive margin)."""

    def __init__(self, options: PreferenceEvalOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        pairs = [e for e in examples if isinstance(e, PreferenceExample)]
        if self.options.limit:
            pairs = pairs[: self.options.limit]
        if not pairs:
            return {}
        max_length = ctx.data_config.max_length
        if is_reward_model(model):
            from .encoding import render_style
            from .reward import pairwise_accuracy

            style = render_style(ctx.tokenizer, self.options.render)
            return pairwise_accuracy(model, ctx.tokenizer, pairs, style, max_length, self.options.batch_size)
        prompts = [p.prompt for p in pairs]
        chosen = answer_logprobs(model, ctx.tokenizer, prompts, [p.chosen for p in pairs], max_length, self.options.batch_size)
        rejected = answer_logprobs(model, ctx.tokenizer, prompts, [p.rejected for p in pairs], max_length, self.options.batch_size)
        margins = [c - r for c, r in zip(chosen, rejected)]
        return {
            "margin": sum(margins) / len(margins),
            "accuracy": sum(m > 0 for m in margins) / len(margins),
            "chosen_logp": sum(chosen) / len(chosen),
        }
