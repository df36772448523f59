"""The ``kto`` objective on TRL's KTOTrainer: each preference pair becomes a desirable and an undesirable answer."""

from __future__ import annotations

from typing import Any

from ftx_hookspecs import PreferenceExample, RunContext, TrainResult

from . import KTOOptions, refuse_packing
from .dpo import is_peft_model, preference_pairs, reference_model
from .encoding import fit_prompt


def unpaired_rows(examples: list[PreferenceExample], tokenizer: Any, prompt_budget: int) -> list[dict[str, Any]]:
    """TRL's conversational unpaired rows, chosen and rejected answers interleaved: the KL estimate pairs each
    answer with a neighbour's, so a batch should mix both kinds."""
    rows: list[dict[str, Any]] = []
    for e in examples:
        prompt = fit_prompt(tokenizer, e.prompt, prompt_budget)
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": e.chosen}], "label": True})
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": e.rejected}], "label": False})
    return rows


class KTOObjective:
    """Make desirable answers likelier and undesirable ones less likely, relative to the reference."""

    def __init__(self, options: KTOOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from datasets import Dataset, disable_progress_bars
        from trl import KTOConfig, KTOTrainer

        disable_progress_bars()
        refuse_packing(ctx, "kto")
        train, evals = preference_pairs(ctx, "kto")
        opts = self.options
        args = ctx.training_arguments(
            KTOConfig,
            beta=opts.beta,
            loss_type=opts.loss_type,
            desirable_weight=opts.desirable_weight,
            undesirable_weight=opts.undesirable_weight,
            precompute_ref_log_probs=opts.precompute_ref_log_probs,
            max_length=ctx.data_config.max_length,
            remove_unused_columns=True,
            train_sampling_strategy="sequential" if opts.loss_type == "kto" else "random",
        )
        budget = opts.max_prompt_length or args.max_length // 2
        ref = reference_model(model, opts)
        ctx.echo(f"  kto: {len(train)} pairs as {2 * len(train)} answers; reference: "
                 + ("frozen adapter copy over the shared base" if is_peft_model(model)
                    else "precomputed log-probs" if ref is None else "frozen copy of the model"))
        trainer = KTOTrainer(
            model=model,
            ref_model=ref,
            args=args,
            train_dataset=Dataset.from_list(unpaired_rows(train, ctx.tokenizer, budget)),
            eval_dataset=(Dataset.from_list(unpaired_rows(evals, ctx.tokenizer, budget))
                          if evals and args.eval_strategy != "no" else None),
            processing_class=ctx.tokenizer,
        )
        result = ctx.fit(trainer)
        if is_peft_model(model) and "ref" in getattr(model, "peft_config", {}):
            model.delete_adapter("ref")  # TRL's frozen reference copy; only the trained adapter is saved
        result.metrics["pairs"] = float(len(train))
        del ref
        return result
