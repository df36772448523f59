"""The ``answer-loss`` objective, as docs/plugins/tutorial.md shows it."""

from __future__ import annotations

from typing import Any

from ftx.api import CausalLMCollator, DataError, tokenize_chat
from ftx_hookspecs import ChatExample, RunContext, TrainResult


class AnswerLoss:
    def __init__(self, options: Any) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from transformers import Trainer

        max_length = ctx.data_config.max_length

        def features(examples: Any) -> list[dict[str, list[int]]]:
            items = [tokenize_chat(ctx.tokenizer, e, "assistant") for e in examples if isinstance(e, ChatExample)]
            return [{"input_ids": t.input_ids[:max_length], "labels": t.labels[:max_length]} for t in items]

        train = features(ctx.data.train)
        if not train:
            raise DataError("answer-loss needs chat examples (data.format = 'alpaca', 'messages', ...)")
        trainer = Trainer(
            model=model,
            args=ctx.training_arguments(),
            train_dataset=train,
            eval_dataset=features(ctx.data.eval) or None,
            data_collator=CausalLMCollator(ctx.tokenizer.pad_token_id),
        )
        result = ctx.fit(trainer)
        result.metrics["examples"] = float(len(train))  # the objective's own figures go here
        return result
