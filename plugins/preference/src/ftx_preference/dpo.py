"""The ``dpo`` objective on TRL's DPOTrainer, fed from ftx's prepared preference examples.

The pieces every pairwise objective shares (the preference examples of a run, TRL's conversational
rows, the figures reported after training) live here too; ``orpo``, ``cpo`` and ``simpo``
(:mod:`ftx_preference.contrastive`) use them. With ``[data] packing = true`` each trains on the
packed variant of its TRL trainer (:mod:`ftx_preference.packed_trainers`).
"""

from __future__ import annotations

import copy
from typing import Any

from ftx.errors import DataError
from ftx_hookspecs import PreferenceExample, RunContext, TrainResult

from . import DPOOptions
from .encoding import fit_prompt


def conversational_rows(examples: list[PreferenceExample], tokenizer: Any, prompt_budget: int) -> list[dict[str, Any]]:
    """TRL's conversational preference rows: the prompt turns (shortened from the start to fit
    ``prompt_budget`` tokens), and each answer as an assistant turn."""
    return [
        {
            "prompt": fit_prompt(tokenizer, e.prompt, prompt_budget),
            "chosen": [{"role": "assistant", "content": e.chosen}],
            "rejected": [{"role": "assistant", "content": e.rejected}],
        }
        for e in examples
    ]


def preference_pairs(ctx: RunContext, objective: str) -> tuple[list[PreferenceExample], list[PreferenceExample]]:
    """The run's training and held-out preference pairs; a clear error when the data has none."""
    train = [e for e in ctx.data.train if isinstance(e, PreferenceExample)]
    evals = [e for e in ctx.data.eval if isinstance(e, PreferenceExample)]
    if not train:
        raise DataError(f"the {objective} objective needs preference examples (data.format = \"preference\")")
    return train, evals


def pair_datasets(train: list[PreferenceExample], evals: list[PreferenceExample], tokenizer: Any, prompt_budget: int,
                  args: Any) -> tuple[Any, Any]:
    """``datasets.Dataset`` of the training rows, and of the held-out rows when the run evaluates during training."""
    from datasets import Dataset

    train_set = Dataset.from_list(conversational_rows(train, tokenizer, prompt_budget))
    eval_set = (Dataset.from_list(conversational_rows(evals, tokenizer, prompt_budget))
                if evals and args.eval_strategy != "no" else None)
    return train_set, eval_set


def pairwise_figures(result: TrainResult, pairs: int) -> TrainResult:
    """Add the pair count and the last logged implicit-reward margin and accuracy (TRL's ``rewards/*``)."""
    result.metrics["pairs"] = float(pairs)
    for key in ("rewards/margins", "rewards/accuracies"):
        last = next((h[key] for h in reversed(result.history) if key in h), None)
        if last is not None:
            result.metrics["final_" + key.replace("rewards/", "reward_")] = float(last)
    return result


def packing_figures(result: TrainResult, trainer: Any) -> TrainResult:
    """Add the share of computed tokens that was padding, unpacked and packed, where the trainer packed."""
    stats = getattr(trainer, "packing_stats", None)
    if stats is not None:
        result.metrics.update(stats.figures())
    return result


def is_peft_model(model: Any) -> bool:
    """A peft-wrapped model (lora, qlora, dora methods)."""
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def reference_model(model: Any, options: DPOOptions) -> Any:
    """The frozen reference, or ``None`` where TRL needs none.

    * adapters: TRL computes the reference with a frozen copy of the adapter (the base is shared);
    * ``precompute_ref_log_probs``: the log-probs are computed once from the model before training;
    * otherwise a frozen copy of the model as it is now, with the same head, dtype and embeddings.
    """
    if is_peft_model(model) or options.precompute_ref_log_probs:
        return None
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref.eval()


class DPOObjective:
    """Direct preference optimisation: raise log p(chosen) - log p(rejected) relative to the reference."""

    def __init__(self, options: DPOOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from datasets import disable_progress_bars
        from trl import DPOConfig, DPOTrainer

        trainer_class: Any = DPOTrainer
        if ctx.data_config.packing:
            from .packed_trainers import packed_variant

            trainer_class = packed_variant(DPOTrainer)

        disable_progress_bars()  # TRL's dataset preparation; ftx prints its own progress

        train, evals = preference_pairs(ctx, "dpo")
        opts = self.options
        loss_type = [opts.loss_type] if isinstance(opts.loss_type, str) else list(opts.loss_type)
        args = ctx.training_arguments(
            DPOConfig,
            beta=opts.beta,
            loss_type=loss_type,
            loss_weights=opts.loss_weights,
            label_smoothing=opts.label_smoothing,
            precompute_ref_log_probs=opts.precompute_ref_log_probs,
            max_length=ctx.data_config.max_length,
            remove_unused_columns=True,
        )
        budget = opts.max_prompt_length or args.max_length // 2
        ref = reference_model(model, opts)
        ctx.echo("  reference: " + ("frozen adapter copy over the shared base" if is_peft_model(model)
                                    else "precomputed log-probs" if ref is None else "frozen copy of the model")
                 + ("; chosen and rejected answers packed, no padding" if ctx.data_config.packing else ""))
        train_set, eval_set = pair_datasets(train, evals, ctx.tokenizer, budget, args)
        trainer = trainer_class(
            model=model,
            ref_model=ref,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=ctx.tokenizer,
        )
        result = ctx.fit(trainer)
        if is_peft_model(model) and "ref" in getattr(model, "peft_config", {}):
            model.delete_adapter("ref")  # TRL's frozen reference copy; only the trained adapter is saved
        del ref
        return packing_figures(pairwise_figures(result, len(train)), trainer)
