"""SFT and continued pre-training on transformers' Trainer, with exact masks and optional packing."""

from __future__ import annotations

import time
from typing import Any

from ftx.data.cache import tokenize_prepared
from ftx.data.tokenize import Tokenized
from ftx.training import CausalLMCollator, PackedCollator, make_log_callback, quiet_trainer, training_arguments
from ftx.trainer import with_ftx_guards
from ftx.watch import watch_callbacks
from ftx_hookspecs import RunContext, TrainResult

from . import SFTOptions, TextOptions


def _features(items: list[Tokenized]) -> list[dict[str, list[int]]]:
    return [{"input_ids": t.input_ids, "labels": t.labels} for t in items]


def train_language_model(model: Any, ctx: RunContext, train_on: str) -> TrainResult:
    """Tokenise ``ctx.data``, train with Trainer, and return the figures."""
    from transformers import Trainer

    data_cfg = ctx.recipe["data"]
    tokenized = tokenize_prepared(ctx.data, ctx.tokenizer, data_cfg, train_on, echo=ctx.echo)
    train, evals = tokenized.train, tokenized.eval
    pad = ctx.tokenizer.pad_token_id
    collator = PackedCollator(data_cfg["max_length"], pad) if data_cfg["packing"] else CausalLMCollator(pad)
    sampling = {"train_sampling_strategy": "group_by_length"} if data_cfg.get("group_by_length") else {}
    history: list[dict[str, float]] = []
    trainer = with_ftx_guards(Trainer)(
        ctx=ctx,
        model=model,
        args=training_arguments(ctx, **sampling),
        train_dataset=_features(train),
        eval_dataset=_features(evals) if evals else None,
        data_collator=collator,
        callbacks=[make_log_callback(ctx, history), *watch_callbacks(ctx, history)],  # early stopping
    )
    quiet_trainer(trainer)
    started = time.perf_counter()
    resume = getattr(ctx, "resume_from", None)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    steps = trainer.state.global_step
    per_example = sum(t.trained for t in train) / len(train)
    trained_tokens = per_example * steps * ctx.train.batch_size * ctx.train.grad_accum
    metrics = {
        "train_loss": float(output.training_loss),
        "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), float(output.training_loss)),
        "steps": float(steps),
        "train_seconds": round(seconds, 2),
        "examples": float(len(train)),
    }
    if seconds > 0:
        metrics["trained_tokens_per_second"] = round(trained_tokens / seconds, 1) if trained_tokens else 0.0
    return TrainResult(metrics=metrics, history=history)


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
