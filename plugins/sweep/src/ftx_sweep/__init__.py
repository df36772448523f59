"""ftx plugin: ``ftx sweep``, hyperparameter search over a recipe with Optuna (one run folder per trial).

Registered through ``ftx_register_commands``, the path any outside plugin's command takes; the
command is in :mod:`ftx_sweep.cli` and Optuna in :mod:`ftx_sweep.study`, imported only when it runs.
"""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import CommandSpec, hookimpl


@hookimpl
def ftx_register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Register ``sweep``."""
    register(CommandSpec(
        "sweep",
        "Search hyperparameters of RECIPE with Optuna: one run folder per trial, best recipe in best.toml.",
        "ftx_sweep.cli:sweep_command",
    ))
