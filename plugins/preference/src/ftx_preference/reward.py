"""The ``reward`` objective: a Trainer whose loss is the pairwise -log sigmoid(r_chosen - r_rejected)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftx.errors import DataError
from ftx_hookspecs import PreferenceExample, RunContext, TrainResult

from . import RewardOptions, refuse_packing
from .encoding import encode, pad_batch, render_style, score


@dataclass
class PairCollator:
    """Stacks the chosen sequences, then the rejected ones, into one right-padded batch of 2B rows."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        sequences = [f["chosen_ids"] for f in features] + [f["rejected_ids"] for f in features]
        return pad_batch(sequences, self.pad_token_id)


def pairwise_accuracy(model: Any, tokenizer: Any, examples: list[PreferenceExample], style: str,
                      max_length: int, batch_size: int = 16) -> dict[str, float]:
    """Share of pairs where the chosen answer scores higher, and the mean reward margin."""
    if not examples:
        return {}
    prompts = [e.prompt for e in examples]
    chosen = score(model, tokenizer, prompts, [e.chosen for e in examples], style=style,
                   max_length=max_length, batch_size=batch_size)
    rejected = score(model, tokenizer, prompts, [e.rejected for e in examples], style=style,
                     max_length=max_length, batch_size=batch_size)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins)}


def _make_trainer_class() -> Any:
    import torch
    from transformers import Trainer

    class PairwiseRewardTrainer(Trainer):  # type: ignore[misc]
        """Trainer with the Bradley-Terry pairwise loss on (chosen, rejected) batches."""

        center_rewards: float | None = None

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            rewards = outputs.logits.float()[:, 0]
            chosen, rejected = rewards.chunk(2)
            loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
            if self.center_rewards:
                loss = loss + self.center_rewards * (rewards**2).mean()
            return (loss, outputs) if return_outputs else loss

        def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                            ignore_keys: Any = None) -> Any:
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

    return PairwiseRewardTrainer


class RewardObjective:
    """Trains a one-output sequence-classification model on preference pairs."""

    def __init__(self, options: RewardOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        refuse_packing(ctx, "reward")
        max_length = ctx.data_config.max_length
        tokenizer = ctx.tokenizer
        style = render_style(tokenizer, self.options.render)
        train = [e for e in ctx.data.train if isinstance(e, PreferenceExample)]
        evals = [e for e in ctx.data.eval if isinstance(e, PreferenceExample)]
        if not train:
            raise DataError("the reward objective needs preference examples (data.format = \"preference\")")

        def features(examples: list[PreferenceExample]) -> list[dict[str, list[int]]]:
            return [{"chosen_ids": encode(tokenizer, e.prompt, e.chosen, style, max_length),
                     "rejected_ids": encode(tokenizer, e.prompt, e.rejected, style, max_length)} for e in examples]

        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = pad_id
        trainer = _make_trainer_class()(
            model=model,
            args=ctx.training_arguments(),
            train_dataset=features(train),
            eval_dataset=features(evals) if evals else None,
            data_collator=PairCollator(pad_id),
        )
        trainer.center_rewards = self.options.center_rewards
        ctx.echo(f"  reward model: {len(train)} pairs, rendered as {style!r} text")
        result = ctx.fit(trainer)
        metrics = result.metrics
        metrics["pairs"] = float(len(train))
        held_out = pairwise_accuracy(model, tokenizer, evals, style, max_length)
        metrics.update({f"eval_{k}": v for k, v in held_out.items()})
        if held_out:
            ctx.echo(f"  held-out pairwise accuracy {held_out['accuracy']:.3f}, margin {held_out['margin']:.3f}")
        return result
