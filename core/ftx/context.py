"""The run context handed to components and lifecycle hooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftx_hookspecs import TrainResult

from .errors import RecipeError
from .layout import CHECKPOINTS
from .plugins import FtxPluginManager
from .recipe import Recipe
from .recipe.loader import validation_problems
from .recipe.schema import DataSection, ModelSection, TrainSection


@dataclass
class Run:
    """One run: its recipe, folder, device, tokenizer and data, and the hooks to report to."""

    recipe_obj: Recipe
    run_dir: Path
    manager: FtxPluginManager
    device: str = "cpu"
    tokenizer: Any = None
    data: Any = None
    echo_fn: Callable[[str], None] = print
    history: list[dict[str, float]] = field(default_factory=list)
    resume_from: Path | None = None
    """The verified checkpoint to continue from (``ftx run --resume``), else ``None``."""
    stop_requested: bool = False
    """Set by SIGTERM/SIGINT: trainers save a checkpoint at the end of the step and stop."""
    skipped_steps: int = 0
    """Optimizer steps skipped for NaN/inf gradients."""
    last_checkpoint: Path | None = None
    """The newest complete checkpoint this run wrote (its manifest is on disk), else ``None``."""
    method: Any = None
    """The run's built method: ``fit`` asks its optional ``optimizer_param_groups`` (e.g. LoRA+)."""

    @property
    def recipe(self) -> Mapping[str, Any]:
        return self.recipe_obj.to_dict()

    @property
    def train(self) -> TrainSection:
        return self.recipe_obj.train

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINTS

    @property
    def base_dir(self) -> Path:
        """The recipe file's folder (relative paths in options resolve against it)."""
        return self.recipe_obj.base_dir

    @property
    def data_config(self) -> DataSection:
        """The validated ``[data]`` table (a copy: changing it changes nothing)."""
        return self.recipe_obj.data.model_copy()

    @property
    def model_config(self) -> ModelSection:
        """The validated ``[model]`` table (a copy: changing it changes nothing)."""
        return self.recipe_obj.model.model_copy()

    def training_arguments(self, config_class: Any = None, **overrides: Any) -> Any:
        """transformers ``TrainingArguments`` (or ``config_class``, e.g. TRL's ``DPOConfig``) from ``[train]``."""
        from .training import training_arguments

        return training_arguments(self, config_class, **overrides)

    def fit(self, trainer: Any) -> TrainResult:
        """Train ``trainer`` with ftx's guards, logging, early stopping and resume; the standard figures."""
        from .trainer import fit_trainer

        return fit_trainer(self, trainer)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.manager.hook.log_metrics(self, step, dict(metrics))

    def checkpoint_saved(self, path: Path, step: int) -> None:
        self.manager.hook.checkpoint_saved(self, step, path)

    def build_component(self, kind: str, name: str, options: Mapping[str, Any]) -> Any:
        found = self.manager.registry.get(kind, name, kind)
        opts, problems = validation_problems(found.spec.options, dict(options), f"{kind} {name}")
        if problems:
            raise RecipeError(problems)
        return found.spec.build(opts)

    def echo(self, message: str) -> None:
        self.echo_fn(message)
