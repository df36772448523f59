"""Protocols of what a component's factory returns, and of the run context the core hands it.

Each factory is called with the component's validated options and returns an object with the
methods below. The core calls them in this order: data format (while preparing data), method
``apply``, evaluators (before), objective ``train``, evaluators (after), method ``save``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .examples import Example


@runtime_checkable
class RunContext(Protocol):
    """What the core exposes to components during a run."""

    recipe: Mapping[str, Any]
    """The resolved recipe as plain data (defaults filled, paths absolute)."""
    run_dir: Path
    """The run folder; components write only below it."""
    checkpoint_dir: Path
    """Where resumable state goes (``run_dir / "checkpoints"``)."""
    train: Any
    """The validated ``[train]`` table (attributes ``lr``, ``batch_size``, ``epochs``, ``max_steps``, ...)."""
    device: str
    """``"cpu"``, ``"cuda"`` or ``"mps"``."""
    tokenizer: Any
    """The run's tokenizer, with its chat template set."""
    data: Any
    """The prepared data: ``data.train`` and ``data.eval`` sequences of examples, plus tokenised forms."""
    resume_from: Path | None
    """A verified checkpoint to resume from (``ftx run --resume``): pass it to the trainer; else ``None``."""
    stop_requested: bool
    """True once SIGTERM/SIGINT arrived: save a checkpoint and stop at the end of the step."""
    base_dir: Path
    """The recipe file's folder: resolve relative paths of options against it (added in 1.2)."""
    data_config: Any
    """The validated ``[data]`` table, read-only (``max_length``, ``packing``, ...; added in 1.2)."""
    model_config: Any
    """The validated ``[model]`` table, read-only (``name``, ``dtype``, ...; added in 1.2)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record metrics at a training step; broadcast to ``ftx_log_metrics``."""

    def checkpoint_saved(self, path: Path, step: int) -> None:
        """Announce a complete checkpoint; broadcast to ``ftx_checkpoint_saved``."""

    def build_component(self, kind: str, name: str, options: Mapping[str, Any]) -> Any:
        """Build another registered component by kind and name (e.g. a reward for an RL objective)."""

    def echo(self, message: str) -> None:
        """Print a progress line for the user."""

    def training_arguments(self, config_class: Any = None, **overrides: Any) -> Any:
        """transformers ``TrainingArguments`` from ``[train]`` (or ``config_class``, e.g. TRL's ``DPOConfig``);
        ``overrides`` win (added in 1.2)."""

    def fit(self, trainer: Any) -> TrainResult:
        """Train a transformers or TRL ``Trainer`` with ftx's guarantees and return the standard figures (added in 1.2).

        Attaches the NaN/inf step skip, divergence stop, checkpoint manifests, stop-on-SIGTERM
        checkpoint, log forwarding and early stopping; resumes from ``resume_from``; times the run.
        """


@dataclass
class TrainResult:
    """What an objective reports after training."""

    metrics: dict[str, float] = field(default_factory=dict)
    """Summary figures (final train loss, steps, tokens/s, ...), written under ``metrics.json["train"]``."""
    history: list[dict[str, float]] = field(default_factory=list)
    """One entry per logged step: ``{"step": ..., "loss": ..., "eval_loss": ...}`` for the curves."""
    model: Any = None
    """The trained model when the objective replaced it (e.g. a reward head); otherwise ``None``."""


@runtime_checkable
class Method(Protocol):
    """Makes a model's weights trainable, and saves what was trained.

    ``load_trained``, ``merge`` and ``trained_base`` (added in 1.2) are optional: a method that saves
    a full Hugging Face model needs none of them, and the core calls each only when present (so test
    for them with ``getattr``, not ``isinstance``). A method that saves an adapter implements them so
    that ``ftx eval`` and deploy plugins can load, merge and find the base of what it saved.
    """

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        """Extra ``from_pretrained`` keyword arguments (e.g. a quantization config); ``{}`` for most."""

    def apply(self, model: Any, ctx: RunContext) -> Any:
        """Return the model to train (the same object or a wrapper such as a peft model)."""

    def save(self, model: Any, path: Path, ctx: RunContext) -> None:
        """Write the trained model (or adapter) in Hugging Face format to ``path``."""

    def load_trained(self, model: Any, path: Path, ctx: RunContext | None) -> Any:
        """Optional (1.2): put what ``save`` wrote in ``path`` back on ``model``, the base loaded as for training.

        ``ctx`` is the run's context, or ``None`` for a folder loaded without its run (then the base
        is loaded without ``load_kwargs``). Return the model to evaluate or generate with.
        """

    def merge(self, model: Any, ctx: RunContext | None) -> Any:
        """Optional (1.2): fold the trained weights of ``model`` (from ``load_trained``) into its base.

        Return a plain transformers model (no wrapper classes, no quantised weights) that
        ``save_pretrained`` writes as a standalone full model; ``ftx export --merge`` uses it.
        """

    def trained_base(self, path: Path) -> Mapping[str, Any] | None:
        """Optional (1.2): for a folder this method saved, found without its run, the base it trained on.

        Return the ``[model]`` table of that base (at least ``name``; ``config`` and ``pretrain_steps``
        for built-in models), or ``None`` when ``path`` is not a folder this method saved.
        """

    def optimizer_param_groups(self, model: Any, lr: float, weight_decay: float) -> list[dict[str, Any]] | None:
        """Optional (1.2): the optimizer's parameter groups for ``model`` (from ``apply``), or ``None`` for the usual ones.

        Each group is a dict with ``params`` and any of ``lr`` / ``weight_decay`` (e.g. LoRA+ gives the B
        matrices ``lr x ratio``); ``ctx.fit`` builds the ``[train] optimizer`` class on them.
        """


@runtime_checkable
class Objective(Protocol):
    """Trains a prepared model on prepared data."""

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        """Train ``model`` in place on ``ctx.data`` and return the figures."""


@runtime_checkable
class DataFormat(Protocol):
    """Turns raw rows (dicts read from a file) into examples."""

    def to_example(self, row: Mapping[str, Any]) -> Example:
        """Convert one row; raise :class:`~ftx_hookspecs.RowError` with a reason for a bad row.

        A format whose rows hold several examples (a text file split into passages) may define
        ``to_examples(row) -> Iterable[Example]`` as well; the core prefers it when present.
        """


@runtime_checkable
class Evaluator(Protocol):
    """Scores a model on held-out examples."""

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        """Return named figures, e.g. ``{"exact_match": 0.83}``; higher or lower is the metric's own."""


@runtime_checkable
class Reward(Protocol):
    """Scores completions; used by RL objectives and reward evaluators."""

    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str | None]
    ) -> list[float]:
        """One float per completion; higher is better."""


@runtime_checkable
class Logger(Protocol):
    """Tracks a run in an outside tool (TensorBoard, MLflow, ...); selected by ``[[loggers]] use = ...``.

    Built when a run starts, only for the loggers its recipe selects. An exception in a logger is
    reported once and that logger is switched off: tracking never fails a training run.
    """

    def start(self, run: RunContext) -> None:
        """The run folder exists and the model is about to load: open the tracker, record the recipe."""

    def log_metrics(self, run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
        """Figures logged during training (``loss``, ``eval_loss``, ``lr``, ...) at an optimiser step."""

    def end(self, run: RunContext, metrics: Mapping[str, Any] | None, error: BaseException | None) -> None:
        """The run ended: ``metrics`` is ``metrics.json`` on success (else ``None``); close the tracker."""


@runtime_checkable
class Kernel(Protocol):
    """Swaps a loaded model's layers for faster ones (fused RMSNorm, RoPE, SwiGLU, cross-entropy, ...).

    Selected by ``[[kernels]] use = ...``; built before the data is prepared, so a kernel that
    cannot run here (no GPU, library missing) fails the run before any work is done.
    """

    def apply(self, model: Any, run: RunContext) -> Any:
        """Patch ``model`` (loaded, not yet wrapped by the method) and return it; raise with advice when it cannot."""
