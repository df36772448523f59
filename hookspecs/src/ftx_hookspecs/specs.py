"""Hook specifications of ftx.

Two kinds of hooks:

* **Registration hooks** (``ftx_register_*``) are called once when the plugin manager starts.
  Each implementation calls ``register(spec)`` for every component it provides; the recipe picks
  components by name. Implementations must stay cheap: no torch, no model loading.
* **Lifecycle hooks** are broadcasts to every implementation, for loggers and observers. Their
  return values are ignored.

Hook arguments are only ever added, never removed or renamed (see ``docs/plugins/versioning.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:
    import pluggy

    from .components import (
        CommandSpec,
        DataFormatSpec,
        EvaluatorSpec,
        KernelSpec,
        LoggerSpec,
        MethodSpec,
        ObjectiveSpec,
        RewardSpec,
    )
    from .protocols import RunContext


# -- registration hooks ------------------------------------------------------------------------


@hookspec
def ftx_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register methods: how a model's weights become trainable (``[method] use = ...``).

    :param register: call once per :class:`~ftx_hookspecs.MethodSpec`.

    Called once when the plugin manager starts.
    """


@hookspec
def ftx_register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    """Register objectives: what training optimises (``[objective] use = ...``).

    :param register: call once per :class:`~ftx_hookspecs.ObjectiveSpec`.

    Called once when the plugin manager starts.
    """


@hookspec
def ftx_register_data_formats(register: Callable[[DataFormatSpec], None]) -> None:
    """Register data formats: how raw rows become examples (``[data] format = ...``).

    :param register: call once per :class:`~ftx_hookspecs.DataFormatSpec`.

    Called once when the plugin manager starts.
    """


@hookspec
def ftx_register_rewards(register: Callable[[RewardSpec], None]) -> None:
    """Register rewards: reward functions and reward models for RL and reward evaluation.

    :param register: call once per :class:`~ftx_hookspecs.RewardSpec`.

    Called once when the plugin manager starts.
    """


@hookspec
def ftx_register_evaluators(register: Callable[[EvaluatorSpec], None]) -> None:
    """Register evaluators: metrics computed before and after training (``[[evaluators]] use = ...``).

    :param register: call once per :class:`~ftx_hookspecs.EvaluatorSpec`.

    Called once when the plugin manager starts.
    """


@hookspec
def ftx_register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Register extra ``ftx`` sub-commands.

    :param register: call once per :class:`~ftx_hookspecs.CommandSpec`; its factory returns a
        ``click.Command`` and is imported only when the command is invoked.

    Called once when the plugin manager starts.
    """


@hookspec
def ftx_register_loggers(register: Callable[[LoggerSpec], None]) -> None:
    """Register loggers: experiment trackers a recipe selects with ``[[loggers]] use = ...``.

    :param register: call once per :class:`~ftx_hookspecs.LoggerSpec`; its factory builds a
        :class:`~ftx_hookspecs.Logger`, and is imported only for runs whose recipe selects it.

    Called once when the plugin manager starts.
    """



@hookspec
def ftx_register_kernels(register: Callable[[KernelSpec], None]) -> None:
    """Register kernels: faster implementations of a model's layers that a recipe selects with ``[[kernels]] use = ...``.

    :param register: call once per :class:`~ftx_hookspecs.KernelSpec`; its factory builds a
        :class:`~ftx_hookspecs.Kernel`, and is imported only for runs whose recipe selects it.

    Called once when the plugin manager starts. Added in ftx-hookspecs 1.1.
    """


# -- lifecycle hooks ---------------------------------------------------------------------------


@hookspec(historic=True)
def ftx_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add hook specifications of a plugin's own, with ``pluginmanager.add_hookspecs(module)``.

    :param pluginmanager: the run's plugin manager.

    Historic: called for every plugin, including those registered later.
    """


@hookspec
def ftx_recipe_loaded(recipe: Mapping[str, Any], path: Path | None) -> None:
    """A recipe was read, overridden and validated, before anything heavy is imported.

    :param recipe: the resolved recipe as plain data (defaults filled, paths absolute).
    :param path: the recipe file, or ``None`` for a recipe built in code.

    Called by ``ftx run`` and ``ftx validate``.
    """


@hookspec
def ftx_run_start(run: RunContext) -> None:
    """A run is about to load its model; its run folder exists.

    :param run: the run's context (``run.run_dir``, ``run.recipe``, ...).
    """


@hookspec
def ftx_log_metrics(run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
    """Metrics were logged during training or evaluation.

    :param run: the run's context.
    :param step: the optimiser step they belong to (0 before training).
    :param metrics: names to values, e.g. ``{"loss": 1.9, "lr": 2e-4}``.
    """


@hookspec
def ftx_checkpoint_saved(run: RunContext, step: int, path: Path) -> None:
    """A complete checkpoint was written.

    :param run: the run's context.
    :param step: the optimiser step of the checkpoint.
    :param path: the checkpoint's folder.
    """


@hookspec
def ftx_run_end(run: RunContext, metrics: Mapping[str, Any] | None, error: BaseException | None) -> None:
    """A run ended, successfully or not.

    :param run: the run's context.
    :param metrics: the content of ``metrics.json`` on success, else ``None``.
    :param error: the exception that ended the run, or ``None`` on success.
    """
