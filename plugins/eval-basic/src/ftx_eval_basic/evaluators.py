"""Exact match by greedy generation, held-out loss/perplexity, and accuracy / macro F1 of predicted labels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ftx.api import generate_replies
from ftx_hookspecs import ChatExample, ClassificationExample, Example, RunContext

from . import ClassificationOptions, ExactMatchOptions, LossOptions


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
            tools=[e.meta.get("tools") for e in chats],
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
        from ftx.api import CausalLMCollator, tokenize_all

        items = list(examples[: self.options.limit] if self.options.limit else examples)
        max_length = ctx.recipe["data"]["max_length"]
        shots = max((int(e.meta.get("shots", 0)) for e in items), default=0)
        if shots:  # a few-shot baseline: score the answer only, and leave room for the examples before it
            tokens = tokenize_all(ctx.tokenizer, items, max_length * (shots + 1), train_on="last")
        else:
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


def predict_labels(model: Any, examples: Sequence[Example], ctx: RunContext, options: ClassificationOptions) -> tuple[list[str], list[str]]:
    """Predicted and reference labels: generated replies for chat examples, argmax of logits for classification."""
    how = options.normalize
    chats = [e for e in examples if isinstance(e, ChatExample)]
    classified = [e for e in examples if isinstance(e, ClassificationExample)]
    predicted: list[str] = []
    references: list[str] = []
    if chats:
        replies = generate_replies(
            model, ctx.tokenizer, [e.prompt_messages for e in chats],
            max_new_tokens=options.max_new_tokens, batch_size=options.batch_size,
            tools=[e.meta.get("tools") for e in chats],
        )
        predicted += [normalize(r, how) for r in replies]
        references += [normalize(e.reference, how) for e in chats]
    if classified:
        predicted += [normalize(p, how) for p in _classify(model, ctx.tokenizer, [e.text for e in classified], options.batch_size)]
        references += [normalize(str(e.label), how) for e in classified]
    return predicted, references


def _classify(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int) -> list[str]:
    """Label names from a sequence-classification model's logits (``config.id2label``)."""
    import torch

    id2label = getattr(model.config, "id2label", None) or {}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(list(texts[start : start + batch_size]), return_tensors="pt", padding=True,
                                  truncation=True).to(device)
                ids = model(**batch).logits.argmax(dim=-1).tolist()
                out += [str(id2label.get(i, i)) for i in ids]
    finally:
        model.train(was_training)
    return out


def macro_f1(predicted: Sequence[str], references: Sequence[str]) -> float:
    """Unweighted mean over the reference labels of each label's F1 (a predicted label never seen scores 0)."""
    labels = sorted(set(references))
    scores = []
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predicted, references))
        fp = sum(p == label and r != label for p, r in zip(predicted, references))
        fn = sum(p != label and r == label for p, r in zip(predicted, references))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


class Accuracy:
    """Share of examples whose predicted label equals the reference label."""

    def __init__(self, options: ClassificationOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        items = examples[: self.options.limit] if self.options.limit else examples
        predicted, references = predict_labels(model, items, ctx, self.options)
        if not references:
            return {}
        return {"accuracy": sum(p == r for p, r in zip(predicted, references)) / len(references)}


class MacroF1:
    """Macro-averaged F1 over the labels of the reference answers."""

    def __init__(self, options: ClassificationOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        items = examples[: self.options.limit] if self.options.limit else examples
        predicted, references = predict_labels(model, items, ctx, self.options)
        if not references:
            return {}
        return {"f1": macro_f1(predicted, references)}
