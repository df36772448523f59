"""Early stopping on validation loss, as a ``TrainerCallback`` objectives add to their Trainer.

``[evaluation] early_stopping_patience = N`` stops training after N validation evaluations
(``[train] eval_every``) without an improvement of at least ``early_stopping_min_delta``; with
``restore_best`` (default) the weights of the best evaluation are put back. Only the trainable
parameters are copied (to CPU memory): an adapter's few MB under LoRA, the whole model under
full fine-tuning. The stop is recorded in the run's history as one entry with ``early_stopped``,
so ``metrics.json`` and the report can say where training stopped.
"""

from __future__ import annotations

from typing import Any

from ftx_hookspecs import RunContext


def watch_callbacks(ctx: RunContext, history: list[dict[str, float]]) -> list[Any]:
    """The callbacks ``[evaluation]`` asks for (an early stopper, or none)."""
    section = ctx.recipe.get("evaluation") or {}
    patience = section.get("early_stopping_patience")
    if not patience:
        return []
    return [make_early_stopping(ctx, history, int(patience), float(section.get("early_stopping_min_delta", 0.0)),
                                bool(section.get("restore_best", True)))]


def make_early_stopping(ctx: RunContext, history: list[dict[str, float]], patience: int, min_delta: float,
                        restore_best: bool) -> Any:
    """A callback that stops after ``patience`` evaluations without improvement and can restore the best weights."""
    from transformers import TrainerCallback

    class EarlyStopping(TrainerCallback):  # type: ignore[misc]
        ftx_role = "early-stopping"

        def __init__(self) -> None:
            self.best: float | None = None
            self.best_step = 0
            self.waited = 0
            self.snapshot: dict[str, Any] | None = None
            self.stopped = False

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        model: Any = None, **kw: Any) -> None:
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            if self.best is None or loss < self.best - min_delta:
                self.best, self.best_step, self.waited = float(loss), int(state.global_step), 0
                if restore_best and model is not None:
                    self.snapshot = {n: p.detach().to("cpu", copy=True)
                                     for n, p in model.named_parameters() if p.requires_grad}
                return
            self.waited += 1
            if self.waited >= patience:
                control.should_training_stop = True
                self.stopped = True

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if not self.stopped:
                return
            restored = False
            if restore_best and self.snapshot is not None and model is not None:
                import torch

                with torch.no_grad():
                    for name, param in model.named_parameters():
                        if name in self.snapshot:
                            param.copy_(self.snapshot[name].to(param.device))
                restored = True
            history.append({"step": float(state.global_step), "early_stopped": 1.0, "best_step": float(self.best_step),
                            "best_eval_loss": float(self.best or 0.0), "restored_best": float(restored)})
            ctx.echo(f"  early stopping at step {state.global_step}: validation loss has not improved for "
                     f"{patience} evaluations since step {self.best_step} ({self.best:.4g})"
                     + ("; best weights restored" if restored else ""))

    return EarlyStopping()
