"""The reference-free pairwise objectives: ``orpo`` on TRL's ORPOTrainer, ``cpo`` and ``simpo`` on its CPOTrainer.

They read the same preference pairs as ``dpo`` (prompt, chosen, rejected: :func:`~ftx_preference.dpo.pair_datasets`)
and report the same figures, but keep no reference model: each regularises with an SFT term on the
chosen answers (orpo, cpo) or a length-normalised reward with a target margin (simpo) instead.
With ``[data] packing = true`` they train on the packed variants of those trainers
(:mod:`ftx_preference.packed_trainers`).
"""

from __future__ import annotations

from typing import Any

from ftx_hookspecs import RunContext, TrainResult

from . import CPOOptions, ORPOOptions, SimPOOptions
from .dpo import packing_figures, pair_datasets, pairwise_figures, preference_pairs


def train_reference_free(model: Any, ctx: RunContext, objective: str, config_class: Any, trainer_class: Any,
                         max_prompt_length: int | None, **settings: Any) -> TrainResult:
    """Train ``model`` on the run's preference pairs with a TRL pairwise trainer that needs no reference model.

    ``settings`` are the objective's fields of ``config_class`` (beta, loss type, ...). With
    ``[data] packing = true`` the trainer is its packed variant (chosen and rejected answers without padding).
    """
    from datasets import disable_progress_bars

    if ctx.data_config.packing:
        from .packed_trainers import packed_variant

        trainer_class = packed_variant(trainer_class)

    disable_progress_bars()  # TRL's dataset preparation; ftx prints its own progress
    train, evals = preference_pairs(ctx, objective)
    args = ctx.training_arguments(config_class, max_length=ctx.data_config.max_length, **settings)
    budget = max_prompt_length or args.max_length // 2
    train_set, eval_set = pair_datasets(train, evals, ctx.tokenizer, budget, args)
    ctx.echo(f"  {objective}: {len(train)} pairs; no reference model"
             + ("; chosen and rejected answers packed, no padding" if ctx.data_config.packing else ""))
    trainer = trainer_class(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                            processing_class=ctx.tokenizer)
    return packing_figures(pairwise_figures(ctx.fit(trainer), len(train)), trainer)


class ORPOObjective:
    """SFT on the chosen answers plus an odds-ratio penalty that makes the rejected ones less likely."""

    def __init__(self, options: ORPOOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        opts = self.options
        return train_reference_free(model, ctx, "orpo", ORPOConfig, ORPOTrainer, opts.max_prompt_length, beta=opts.beta)


class CPOObjective:
    """A DPO-style loss on the policy's own log-probabilities, plus SFT on the chosen answers."""

    def __init__(self, options: CPOOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        opts = self.options
        return train_reference_free(model, ctx, "cpo", CPOConfig, CPOTrainer, opts.max_prompt_length,
                                    beta=opts.beta, loss_type=opts.loss_type, cpo_alpha=opts.sft_weight,
                                    label_smoothing=opts.label_smoothing)


class SimPOObjective:
    """SimPO: a margin between the mean token log-probabilities of the chosen and the rejected answer."""

    def __init__(self, options: SimPOOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        opts = self.options
        # TRL's CPOTrainer is SimPO with loss_type "simpo": loss = -log sigmoid(beta * (mean logp gap) - simpo_gamma)
        return train_reference_free(model, ctx, "simpo", CPOConfig, CPOTrainer, opts.max_prompt_length,
                                    beta=opts.beta, loss_type="simpo", simpo_gamma=opts.gamma,
                                    cpo_alpha=opts.sft_weight, label_smoothing=opts.label_smoothing)
