"""ftx plugin: ``ftx plan``, a memory estimate for a recipe from the model's config alone.

Registered through ``ftx_register_commands``, the path any outside plugin's command takes. The
estimate asks the recipe's method, kernels and objective for their memory through the optional
``memory_plan`` of their options (:class:`ftx_hookspecs.MemoryPlanner`), so it names none of them.
"""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import CommandSpec, hookimpl


@hookimpl
def ftx_register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Register ``plan``."""
    register(CommandSpec(
        "plan",
        "Estimate memory for RECIPE from the model's config alone: will it fit, and which knobs make it fit.",
        "ftx_plan.cli:plan_command",
    ))
