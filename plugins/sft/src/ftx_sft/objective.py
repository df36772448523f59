"""SFT and continued pre-training on transformers' Trainer, with exact masks and optional packing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ftx.api import CausalLMCollator, PackedCollator, Tokenized, tokenize_prepared
from ftx_hookspecs import RunContext, TrainResult

from . import SFTOptions, TextOptions


def _features(items: Sequence[Tokenized]) -> Sequence[dict[str, Any]]:
    lazy = getattr(items, "features", None)  # tokenised splits read their arrays when a batch asks
    if callable(lazy):
        return lazy()
    return [{"input_ids": t.input_ids, "labels": t.labels} for t in items]


def train_language_model(model: Any, ctx: RunContext, train_on: str) -> TrainResult:
    """Tokenise ``ctx.data``, train with Trainer through ``ctx.fit``, and return the figures."""
    from transformers import Trainer

    data_cfg = ctx.data_config
    tokenized = tokenize_prepared(ctx.data, ctx.tokenizer, ctx.recipe["data"], train_on, echo=ctx.echo)
    train, evals = tokenized.train, tokenized.eval
    pad = ctx.tokenizer.pad_token_id
    collator = PackedCollator(data_cfg.max_length, pad) if data_cfg.packing else CausalLMCollator(pad)
    sampling = {"train_sampling_strategy": "group_by_length"} if data_cfg.group_by_length else {}
    trainer = Trainer(
        model=model,
        args=ctx.training_arguments(**sampling),
        train_dataset=_features(train),
        eval_dataset=_features(evals) if evals else None,
        data_collator=collator,
    )
    result = ctx.fit(trainer)
    seconds = result.metrics["train_seconds"]
    trained_total = getattr(train, "trained_tokens", None)
    per_example = (trained_total if isinstance(trained_total, int) else sum(t.trained for t in train)) / len(train)
    trained_tokens = per_example * result.metrics["steps"] * ctx.train.batch_size * ctx.train.grad_accum
    result.metrics["examples"] = float(len(train))
    if seconds > 0:
        result.metrics["trained_tokens_per_second"] = round(trained_tokens / seconds, 1) if trained_tokens else 0.0
    return result


class SFTObjective:
    """Loss on assistant turns (their end-of-turn token included) by default."""

    def __init__(self, options: SFTOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        return train_language_model(model, ctx, self.options.train_on)


class TextObjective:
    """Next-token loss on every token of plain text."""

    def __init__(self, options: TextOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        return train_language_model(model, ctx, "all")
