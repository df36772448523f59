"""ftx plugin: the ``full`` method (every parameter trains, unless frozen by name or layer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ftx_hookspecs import MethodSpec, Options, hookimpl
from pydantic import Field


class FullOptions(Options):
    """``[method] use = "full"``."""

    freeze: list[str] = Field(
        default_factory=list,
        description="parameter-name patterns (fnmatch) to freeze, e.g. ['model.embed_tokens.*']",
    )
    freeze_layers: int = Field(0, ge=0, description="freeze the embeddings and the first N transformer layers")

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: every parameter trains but the frozen ones (:mod:`ftx_full.memory`)."""
        from .memory import full_plan

        return full_plan(self, shape, plan)


@hookimpl
def ftx_register_methods(register: Callable[[MethodSpec], None]) -> None:
    register(MethodSpec(
        name="full",
        summary="Full fine-tuning: every weight trains (optionally freeze modules or the first N layers).",
        factory="ftx_full.method:FullMethod",
        options=FullOptions,
    ))
