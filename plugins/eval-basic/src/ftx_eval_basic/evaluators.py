"""Exact match by greedy generation, and held-out loss/perplexity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ftx.generation import generate_replies
from ftx_hookspecs import ChatExample, Example, RunContext

from . import ExactMatchOptions, LossOptions


def normalize(text: str, how: str) -> str:
    """Apply the comparison rule of ``ExactMatchOptions.normalize``."""
    if how == "none":
        return text
    text = " ".join(text.split())
    return text.lower() if how == "lower" else text


class ExactMatch:
    """Greedy answers compared with the reference answers."""

    def __init__(self, options: ExactMatchOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        chats = [e for e in examples if isinstance(e, ChatExample)]
        if self.options.limit:
            chats = chats[: self.options.limit]
        if not chats:
            return {}
        replies = generate_replies(
            model, ctx.tokenizer, [e.prompt_messages for e in chats],
            max_new_tokens=self.options.max_new_tokens, batch_size=self.options.batch_size,
        )
        how = self.options.normalize
        hits = sum(normalize(r, how) == normalize(e.reference, how) for r, e in zip(replies, chats))
        return {"exact_match": hits / len(chats)}


class Loss:
    """Token-weighted mean loss on what the objective trains, and its exponential."""

    def __init__(self, options: LossOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        import torch
        from ftx.data.tokenize import tokenize_all
        from ftx.training import CausalLMCollator

        items = list(examples[: self.options.limit] if self.options.limit else examples)
        max_length = ctx.recipe["data"]["max_length"]
        tokens = tokenize_all(ctx.tokenizer, items, max_length)
        if not tokens:
            return {}
        collate = CausalLMCollator(ctx.tokenizer.pad_token_id)
        device = next(model.parameters()).device
        total, count = 0.0, 0
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for start in range(0, len(tokens), self.options.batch_size):
                chunk = tokens[start : start + self.options.batch_size]
                batch = collate([{"input_ids": t.input_ids, "labels": t.labels} for t in chunk])
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
                shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
                shift_labels = batch["labels"][:, 1:].reshape(-1)
                loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
                total += float(loss)
                count += int((shift_labels != -100).sum())
        model.train(was_training)
        mean = total / max(count, 1)
        return {"loss": mean, "perplexity": math.exp(min(mean, 50.0))}
