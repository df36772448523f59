"""What ftx adds to transformers' Trainer (and TRL's trainers, which derive from it).

* non-finite gradients skip the optimizer step, weights unchanged; too many in a row abort;
* a loss far above where it started stops the run as diverged;
* every checkpoint gets a manifest, so resume can tell complete checkpoints from broken ones;
* a stop request (SIGTERM/SIGINT) saves a checkpoint at the end of the step and stops cleanly.
"""

from __future__ import annotations

import math
from typing import Any

from ftx_hookspecs import RunContext

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


def with_ftx_guards(base: type) -> type:
    """A subclass of ``base`` (a Trainer class) with ftx's guards; pass ``ctx=`` when constructing it."""

    class FtxGuarded(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, ctx: RunContext, **kwargs: Any) -> None:
            self.ftx_ctx = ctx
            callbacks = list(kwargs.pop("callbacks", None) or [])
            callbacks.append(_guard_callback(ctx))
            super().__init__(*args, callbacks=callbacks, **kwargs)

        def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
            optimizer = super().create_optimizer(*args, **kwargs)
            if not getattr(optimizer, "_ftx_guarded", False):
                guard_optimizer(optimizer, self.ftx_ctx, self.ftx_ctx.train.max_bad_steps)
                optimizer._ftx_guarded = True
            return optimizer

        def _save_checkpoint(self, model: Any, trial: Any, *args: Any, **kwargs: Any) -> None:
            super()._save_checkpoint(model, trial, *args, **kwargs)
            from pathlib import Path

            from .checkpoints import write_manifest

            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            if folder.is_dir() and self.args.should_save:
                write_manifest(folder, self.state.global_step)

    FtxGuarded.__name__ = f"Ftx{base.__name__}"
    FtxGuarded.__qualname__ = FtxGuarded.__name__
    return FtxGuarded


def _guard_callback(ctx: RunContext) -> Any:
    from transformers import TrainerCallback

    class Guard(TrainerCallback):  # type: ignore[misc]
        first_loss: float | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if getattr(ctx, "stop_requested", False):
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            loss = (logs or {}).get("loss")
            if loss is None or not math.isfinite(loss):
                return
            if self.first_loss is None:
                self.first_loss = loss
                return
            factor = ctx.train.divergence_factor
            if factor and loss > factor * self.first_loss:
                raise RunError(
                    f"training diverged: loss {loss:.4g} at step {state.global_step} is over "
                    f"{factor:g}x the first logged loss {self.first_loss:.4g} (train.divergence_factor); "
                    "lower train.lr or raise train.warmup_ratio"
                )

    return Guard()
