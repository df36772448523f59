"""The TensorBoard logger: scalars under ``train/``, ``eval/``, ``before/`` and ``after/`` in event files.

Tags: ``train/loss``, ``train/lr``, ... for training logs; ``eval/loss`` for validation loss
(``eval_loss``); ``before/<evaluator>/<figure>`` at step 0 and ``after/<evaluator>/<figure>`` at
the last step; ``run/<figure>`` for the summary figures of ``metrics.json["train"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ftx_hookspecs import RunContext


def metric_tag(name: str) -> str:
    """``eval_loss`` → ``eval/loss``; ``loss`` → ``train/loss``."""
    if name.startswith("eval_"):
        return "eval/" + name.removeprefix("eval_")
    return "train/" + name


def _numbers(table: Any) -> dict[str, float]:
    if not isinstance(table, Mapping):
        return {}
    return {str(k): float(v) for k, v in table.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardLogger:
    """Writes a run's figures with TensorBoard's ``SummaryWriter`` (through ``torch.utils.tensorboard``)."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.writer: Any = None
        self.last_step = 0
        self.log_dir: Path | None = None

    def start(self, run: RunContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(self.options.dir).expanduser()
        self.log_dir = folder if folder.is_absolute() else Path(run.run_dir) / folder
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=self.options.flush_secs)
        if self.options.log_recipe:
            from ftx.api import toml_text

            text = toml_text(dict(run.recipe))
            self.writer.add_text("recipe", "```toml\n" + text + "\n```", 0)
        run.echo(f"tensorboard: {self.log_dir} (tensorboard --logdir {self.log_dir})")

    def log_metrics(self, run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
        self.last_step = max(self.last_step, int(step))
        for name, value in _numbers(metrics).items():
            self.writer.add_scalar(metric_tag(name), value, int(step))

    def end(self, run: RunContext, metrics: Mapping[str, Any] | None, error: BaseException | None) -> None:
        if self.writer is None:
            return
        try:
            if metrics:
                for phase, step in (("before", 0), ("after", self.last_step)):
                    for evaluator, figures in (metrics.get(phase) or {}).items():
                        for figure, value in _numbers(figures).items():
                            self.writer.add_scalar(f"{phase}/{evaluator}/{figure}", value, step)
                for figure, value in _numbers(metrics.get("train")).items():
                    self.writer.add_scalar(f"run/{figure}", value, self.last_step)
            if error is not None:
                self.writer.add_text("error", f"{type(error).__name__}: {error}", self.last_step)
        finally:
            self.writer.close()
            self.writer = None
