"""The ``classify`` objective: labelled texts train a sequence-classification head on Trainer."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ftx.errors import DataError
from ftx_hookspecs import ClassificationExample, RunContext, TrainResult

from . import ClassifyOptions


@dataclass
class LabelCollator:
    """Right-pads token ids into a batch with its attention mask and class ids."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = [f["input_ids"] + [self.pad_token_id] * (width - len(f["input_ids"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                "labels": torch.tensor([f["label"] for f in features])}


def encode(tokenizer: Any, examples: list[ClassificationExample], label2id: dict[str, int],
           max_length: int) -> list[dict[str, Any]]:
    """Token ids (truncated to ``max_length``) and class ids; a label the head does not know is an error."""
    unknown = sorted({e.label for e in examples} - set(label2id))
    if unknown:
        raise DataError(f"labels {unknown} are not among the model's labels {sorted(label2id)}: "
                        "list every label in [data] labels, or check the data")
    ids = tokenizer([e.text for e in examples], add_special_tokens=True, truncation=True,
                    max_length=max_length)["input_ids"]
    return [{"input_ids": list(i), "label": label2id[e.label]} for i, e in zip(ids, examples)]


def balanced_weights(labels: list[int], classes: int) -> list[float]:
    """n / (classes x count) per class; a class absent from training gets weight 1."""
    counts = Counter(labels)
    return [len(labels) / (classes * counts[c]) if counts[c] else 1.0 for c in range(classes)]


def _trainer_class(weights: list[float] | None) -> Any:
    import torch
    from transformers import Trainer

    if weights is None:
        return Trainer

    class WeightedTrainer(Trainer):  # type: ignore[misc]
        """Cross-entropy with one weight per class."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            weight = torch.tensor(weights, device=outputs.logits.device, dtype=torch.float32)
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels, weight=weight)
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


class ClassifyObjective:
    """Cross-entropy over the labels on the model's classification head (the core sizes it from the data)."""

    def __init__(self, options: ClassifyOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        config = getattr(model, "config", None)
        label2id = dict(getattr(config, "label2id", None) or {})
        train = [e for e in ctx.data.train if isinstance(e, ClassificationExample)]
        evals = [e for e in ctx.data.eval if isinstance(e, ClassificationExample)]
        if not train:
            raise DataError("the classify objective needs labelled texts (data.format = \"classification\")")
        max_length = ctx.data_config.max_length
        features = encode(ctx.tokenizer, train, label2id, max_length)
        eval_features = encode(ctx.tokenizer, evals, label2id, max_length) if evals else None
        weights = (balanced_weights([f["label"] for f in features], len(label2id))
                   if self.options.class_weights == "balanced" else None)
        pad = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else 0
        trainer = _trainer_class(weights)(
            model=model,
            args=ctx.training_arguments(),
            train_dataset=features,
            eval_dataset=eval_features,
            data_collator=LabelCollator(pad),
        )
        counts = Counter(e.label for e in train)
        ctx.echo(f"  classify: {len(train)} texts, {len(label2id)} labels "
                 + ", ".join(f"{name} {counts[name]}" for name in label2id)
                 + (" (balanced class weights)" if weights else ""))
        result = ctx.fit(trainer)
        result.metrics["examples"] = float(len(train))
        return result
