"""ftx plugin: the ``tensorboard`` logger. Writing code lives in :mod:`ftx_logger_tensorboard.writer`.

This module registers the logger's name and options only; TensorBoard (and torch) are imported
when a run whose recipe has ``[[loggers]] use = "tensorboard"`` starts.
"""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import LoggerSpec, Options, hookimpl
from pydantic import Field


class TensorBoardOptions(Options):
    """``[[loggers]] use = "tensorboard"``."""

    dir: str = Field("tensorboard", description="event-file folder; relative paths are inside the run folder")
    log_recipe: bool = Field(True, description="also write the resolved recipe as a text summary")
    flush_secs: int = Field(10, gt=0, description="seconds between flushes of the event file to disk")


@hookimpl
def ftx_register_loggers(register: Callable[[LoggerSpec], None]) -> None:
    register(LoggerSpec(
        name="tensorboard",
        summary="TensorBoard event files: training curves, before/after figures (run_dir/tensorboard).",
        factory="ftx_logger_tensorboard.writer:TensorBoardLogger",
        options=TensorBoardOptions,
    ))
