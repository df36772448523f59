"""The run folder's layout: the one place where the names of the files ftx writes in it are spelled.

A run folder is a contract (docs/recipes.md, DESIGN.md): ``recipe.lock.toml`` marks it as ftx's,
``metrics.json`` marks it finished, ``model/`` holds what was trained. Every module, and every
command plugin through ``ftx.api``, asks :class:`RunFolder` for a path instead of spelling it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOCK = "recipe.lock.toml"
"""The resolved recipe with versions and seed; a folder holding it is an ftx run folder."""
METRICS = "metrics.json"
"""Before/after/train figures; written last, so its presence means the run finished."""
MODEL = "model"
"""The trained model or adapter, in Hugging Face format."""
CHECKPOINTS = "checkpoints"
"""Resumable training state."""
ERROR = "error.txt"
"""The traceback of a failed run."""
HISTORY = "history.json"
"""One entry per logged step, for curves and comparisons."""
LOG = "logs.jsonl"
"""Every logged metric as it arrived."""
LIBRARIES = "libraries.log"
"""Warnings and log records of the libraries ftx drives (transformers, TRL, ...), kept off the console."""
SAMPLES = "samples.json"
"""Generated replies before and after training, for the report."""
REPORT = "report.html"
"""The human-readable report."""
CURVES = "curves.png"
"""Train and validation loss curves."""
EVAL = "eval.json"
"""Figures written by ``ftx eval``."""
STAGES = "stages"
"""A pipeline's stage run folders."""
DEEPSPEED = "deepspeed.json"
"""The DeepSpeed config a ``[distributed] strategy = "deepspeed"`` run trained with."""


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    root: Path

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def model(self) -> Path:
        return self.root / MODEL

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def error(self) -> Path:
        return self.root / ERROR

    @property
    def history(self) -> Path:
        return self.root / HISTORY

    @property
    def log(self) -> Path:
        return self.root / LOG

    @property
    def libraries(self) -> Path:
        return self.root / LIBRARIES

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def curves(self) -> Path:
        return self.root / CURVES

    @property
    def eval(self) -> Path:
        return self.root / EVAL

    def stage(self, name: str) -> Path:
        """A pipeline stage's own run folder."""
        return self.root / STAGES / name

    def is_run(self) -> bool:
        """True for a folder ftx wrote (it holds the lock file)."""
        return self.lock.is_file()

    def is_finished(self) -> bool:
        """True once the run wrote its metrics."""
        return self.metrics.is_file()
