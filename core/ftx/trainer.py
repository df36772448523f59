"""What ftx adds to transformers' Trainer (and TRL's trainers, which derive from it).

* non-finite gradients skip the optimizer step, weights unchanged; too many in a row abort;
* a loss far above where it started stops the run as diverged;
* every checkpoint gets a manifest, so resume can tell complete checkpoints from broken ones;
* a stop request (SIGTERM/SIGINT) saves a checkpoint at the end of the step and stops cleanly.

:func:`fit_trainer` (``ctx.fit``) attaches them to a trainer already built, adds log forwarding and
early stopping, and resumes from the run's last complete checkpoint.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ftx_hookspecs import RunContext, TrainResult

from .errors import RunError


def _grads_finite(optimizer: Any) -> bool:
    """One fused norm over every gradient (a NaN or inf anywhere makes it non-finite): one sync per step."""
    import torch
    from torch.nn.utils import get_total_norm

    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(get_total_norm(grads)))


def guard_optimizer(optimizer: Any, ctx: RunContext, max_bad_steps: int) -> Any:
    """Wrap ``optimizer.step`` so a step with NaN/inf gradients is skipped (and counted)."""
    original = optimizer.step
    state = {"in_a_row": 0}

    def step(*args: Any, **kwargs: Any) -> Any:
        if _grads_finite(optimizer):
            state["in_a_row"] = 0
            return original(*args, **kwargs)
        state["in_a_row"] += 1
        skipped = getattr(ctx, "skipped_steps", 0) + 1
        try:
            ctx.skipped_steps = skipped  # type: ignore[attr-defined]
        except AttributeError:
            pass
        ctx.echo(f"  non-finite loss or gradients: optimizer step skipped, weights unchanged ({state['in_a_row']} in a row)")
        if state["in_a_row"] >= max_bad_steps:
            raise RunError(
                f"the loss or gradients were NaN/inf for {state['in_a_row']} steps in a row "
                f"(train.max_bad_steps = {max_bad_steps}); lower train.lr, check the data, "
                "or train in float32 (model.dtype = 'float32')"
            )
        return None

    optimizer.step = step
    return optimizer


def attach_guards(trainer: Any, ctx: RunContext) -> Any:
    """Give an already-built Trainer (transformers or TRL) ftx's guards; calling it again changes nothing.

    The optimizer guard wraps ``create_optimizer`` on the instance (or the optimizer already made);
    the stop request, divergence stop and checkpoint manifests come from one callback.
    """
    if getattr(trainer, "_ftx_guards_attached", False):
        return trainer
    trainer.ftx_ctx = ctx
    max_bad = ctx.train.max_bad_steps

    def guard(optimizer: Any) -> Any:
        if not getattr(optimizer, "_ftx_guarded", False):
            guard_optimizer(optimizer, ctx, max_bad)
            optimizer._ftx_guarded = True
        return optimizer

    if getattr(trainer, "optimizer", None) is not None:
        guard(trainer.optimizer)
    create = trainer.create_optimizer

    def create_optimizer(*args: Any, **kwargs: Any) -> Any:
        if getattr(trainer, "optimizer", None) is None:
            trainer.optimizer = method_optimizer(trainer, getattr(ctx, "method", None))
        return guard(create(*args, **kwargs))

    trainer.create_optimizer = create_optimizer
    # first after transformers' own flow callback: the manifest is written before any callback announces the checkpoint
    callbacks = trainer.callback_handler.callbacks
    flow = next((i for i, cb in enumerate(callbacks) if type(cb).__name__ == "DefaultFlowCallback"), -1)
    # online RL trainers (GRPO, RLOO: they score samples with reward functions) log a surrogate loss near
    # zero or below it, which says nothing about divergence
    callbacks.insert(flow + 1, _guard_callback(ctx, watch_divergence=not hasattr(trainer, "reward_funcs")))
    trainer._ftx_guards_attached = True
    return trainer


def method_optimizer(trainer: Any, method: Any) -> Any:
    """The optimizer built from the method's own parameter groups (``Method.optimizer_param_groups``, hookspecs 1.2:
    e.g. LoRA+'s faster B matrices), with the class and settings ``[train] optimizer`` chose; ``None`` when the
    method has no groups, so the Trainer builds its usual one."""
    groups_of = getattr(method, "optimizer_param_groups", None)
    if groups_of is None:
        return None
    args = trainer.args
    groups = groups_of(trainer.model, args.learning_rate, args.weight_decay)
    if not groups:
        return None
    if trainer.optimizer_cls_and_kwargs is not None:
        cls, kwargs = trainer.optimizer_cls_and_kwargs
    else:
        cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, trainer.model)
    if {"params", "model", "optimizer_dict"} & set(kwargs) or not isinstance(cls, type):
        raise RunError(f"train.optimizer {getattr(args.optim, 'value', args.optim)!r} builds its own parameter groups, which cannot be combined "
                       "with the method's (e.g. LoRA+'s loraplus_lr_ratio); drop one of the two")
    return cls(groups, **kwargs)


def with_ftx_guards(base: type) -> type:
    """A subclass of ``base`` (a Trainer class) with ftx's guards; pass ``ctx=`` when constructing it.

    Kept for code written before ``ctx.fit`` (hookspecs 1.2), which attaches the same guards to any trainer.
    """

    class FtxGuarded(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, ctx: RunContext, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            attach_guards(self, ctx)

    FtxGuarded.__name__ = f"Ftx{base.__name__}"
    FtxGuarded.__qualname__ = FtxGuarded.__name__
    return FtxGuarded


def _wait_for_every_rank() -> None:
    """A barrier across the run's processes when it has several (every rank calls ``on_save``); else nothing."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _guard_callback(ctx: RunContext, watch_divergence: bool = True) -> Any:
    from transformers import TrainerCallback

    class Guard(TrainerCallback):  # type: ignore[misc]
        """Stop on request, stop a diverging run, and mark each checkpoint complete once Trainer has written it."""

        first_loss: float | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if getattr(ctx, "stop_requested", False):
                control.should_save = True
                control.should_training_stop = True

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # Trainer calls on_save after _save_checkpoint returned: weights, optimizer, scheduler,
            # RNG states and trainer_state.json are all on disk, so the manifest may now say "complete"
            from .checkpoints import write_manifest

            _wait_for_every_rank()  # each rank writes its own shards and RNG state: all of them are on disk now
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir() and args.should_save:
                write_manifest(folder, state.global_step)
                try:
                    ctx.last_checkpoint = folder  # type: ignore[attr-defined]
                except AttributeError:
                    pass

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            loss = (logs or {}).get("loss")
            if not watch_divergence or loss is None or not math.isfinite(loss):
                return
            if self.first_loss is None:
                self.first_loss = loss
                return
            if self.first_loss <= 0:  # not a likelihood-style loss: no ratio to judge by
                return
            factor = ctx.train.divergence_factor
            if factor and loss > factor * self.first_loss:
                raise RunError(
                    f"training diverged: loss {loss:.4g} at step {state.global_step} is over "
                    f"{factor:g}x the first logged loss {self.first_loss:.4g} (train.divergence_factor); "
                    "lower train.lr or raise train.warmup_ratio"
                )

    return Guard()


def fit_trainer(ctx: RunContext, trainer: Any) -> TrainResult:
    """Train ``trainer`` with ftx's guarantees: guards, log forwarding, early stopping, quiet printing and
    resume from ``ctx.resume_from``; return the standard figures (``RunContext.fit``)."""
    from .training import make_log_callback, quiet_trainer
    from .watch import watch_callbacks

    attach_guards(trainer, ctx)
    history: list[dict[str, float]] = []
    present = {getattr(cb, "ftx_role", None) for cb in trainer.callback_handler.callbacks}
    if "logs" not in present:
        trainer.add_callback(make_log_callback(ctx, history))
    else:  # a trainer built with make_log_callback already: keep its history
        history = next(cb.history for cb in trainer.callback_handler.callbacks if getattr(cb, "ftx_role", None) == "logs")
    if "early-stopping" not in present:
        for callback in watch_callbacks(ctx, history):
            trainer.add_callback(callback)
    quiet_trainer(trainer)
    sharding = _prepare_sharding(trainer)
    resume = getattr(ctx, "resume_from", None)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    train_loss = float(output.training_loss)
    metrics = {
        "train_loss": train_loss,
        "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), train_loss),
        "steps": float(trainer.state.global_step),
        "train_seconds": round(seconds, 2),
    }
    if sharding is None:
        return TrainResult(metrics=metrics, history=history)
    from .sharded import consolidate, shard_metrics

    skeleton, shards = sharding
    metrics.update(shard_metrics(shards))
    return TrainResult(metrics=metrics, history=history, model=consolidate(trainer, skeleton))


def _prepare_sharding(trainer: Any) -> tuple[Any, list[Any]] | None:
    """For an FSDP or DeepSpeed trainer: FSDP's plugin on CPU too, a shard-measuring callback, and the unsharded
    meta-device copy the trained weights are gathered into (:mod:`ftx.sharded`); ``None`` for other trainers."""
    from .sharded import enable_fsdp_on_cpu, meta_copy, shard_callback, sync_from_rank0, uses_sharding

    if not uses_sharding(trainer):
        return None
    enable_fsdp_on_cpu(trainer)
    shards: list[Any] = []
    if getattr(trainer, "is_fsdp_enabled", False):
        sync_from_rank0(trainer.model)
        trainer.add_callback(shard_callback(shards))
    return meta_copy(trainer.model), shards
