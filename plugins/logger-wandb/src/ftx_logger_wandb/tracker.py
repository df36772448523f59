"""The Weights & Biases logger: one W&B run per ftx run.

* config: the resolved recipe flattened to dotted keys (``train.lr``, ``method.use``, ``evaluators.0.use``);
* history: every training log at its optimiser step (``loss``, ``eval_loss``, ``lr``, ...);
* summary: ``before.<evaluator>.<figure>``, ``after.<evaluator>.<figure>`` and ``train.<figure>``;
* files: ``metrics.json``, ``report.html``, ``curves.png``, ``recipe.lock.toml`` (``save_files = false`` skips them);
* exit code 0 for a finished run, 1 for a failed or interrupted one.

The run's files are under ``run_dir/wandb``; in offline mode (``mode = "offline"`` or ``WANDB_MODE=offline``)
nothing leaves the machine until ``wandb sync run_dir/wandb/offline-run-*``. wandb's console capture is off
(ftx prints its own progress) and so is its error reporting to W&B's servers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ftx_hookspecs import RunContext

FILES = ("metrics.json", "report.html", "curves.png", "recipe.lock.toml")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables and arrays as dotted keys: ``{"a": {"b": [1]}}`` → ``{"a.b.0": 1}``."""
    if isinstance(value, Mapping):
        items: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list) and value and all(isinstance(v, (Mapping, list)) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return out


def numbers(flat: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a flat mapping, as floats (booleans and text left out)."""
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class WandbLogger:
    """Tracks one ftx run as one W&B run."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.run: Any = None

    def start(self, run: RunContext) -> None:
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # no crash reports to W&B's servers
        import wandb

        opts = self.options
        run_dir = Path(run.run_dir)
        settings = wandb.Settings(
            console="off", silent=True, disable_git=True, x_disable_stats=not opts.system_metrics,
            x_save_requirements=False,
        )
        self.run = wandb.init(
            project=opts.project, entity=opts.entity, name=opts.name or run_dir.name, group=opts.group,
            tags=list(opts.tags) or None, dir=str(run_dir), mode=None if opts.mode == "auto" else opts.mode,
            config={k: v for k, v in flatten(dict(run.recipe)).items() if v is not None},
            settings=settings, reinit="create_new",
        )
        where = getattr(self.run, "dir", None) or run_dir / "wandb"
        run.echo(f"wandb: run {self.run.id} in project {opts.project!r} ({self.run.settings.mode}); files in {where}")

    def log_metrics(self, run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
        figures = numbers(metrics)
        if figures:
            self.run.log(figures, step=int(step))

    def end(self, run: RunContext, metrics: Mapping[str, Any] | None, error: BaseException | None) -> None:
        if self.run is None:
            return
        try:
            if metrics:
                summary = {k: v for k, v in metrics.items() if k in ("before", "after", "train")}
                self.run.summary.update(numbers(flatten(summary)))
                if self.options.save_files:
                    self._save_files(Path(run.run_dir))
            if error is not None:
                self.run.summary["ftx.error"] = f"{type(error).__name__}: {error}"[:500]
        finally:
            self.run.finish(exit_code=0 if error is None else 1)
            self.run = None

    def _save_files(self, run_dir: Path) -> None:
        """Copy the run's summary files into the W&B run's files (uploaded with the run, or by ``wandb sync``)."""
        target = Path(self.run.dir)
        for name in FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, target / name)
