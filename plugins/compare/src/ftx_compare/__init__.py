"""ftx plugin: the ``ftx runs`` and ``ftx compare`` commands (what run folders hold, and how two differ).

Registered through ``ftx_register_commands``, the path any outside plugin's command takes; the
commands themselves are in :mod:`ftx_compare.cli`, imported only when one is invoked.
"""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import CommandSpec, hookimpl


@hookimpl
def ftx_register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Register ``runs`` and ``compare``."""
    register(CommandSpec(
        "runs",
        "List run folders under DIR (default: runs) with status, method, objective, after-metrics and seconds.",
        "ftx_compare.cli:runs_command",
    ))
    register(CommandSpec(
        "compare",
        "Show two runs' recipes (differing keys marked *) and metrics (with B - A) side by side.",
        "ftx_compare.cli:compare_command",
    ))
