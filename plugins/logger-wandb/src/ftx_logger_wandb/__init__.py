"""ftx plugin: the ``wandb`` logger. Tracking code lives in :mod:`ftx_logger_wandb.tracker`.

This module registers the logger's name and options only; wandb is imported when a run whose
recipe has ``[[loggers]] use = "wandb"`` starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ftx_hookspecs import LoggerSpec, Options, hookimpl
from pydantic import Field


class WandbOptions(Options):
    """``[[loggers]] use = "wandb"``."""

    project: str = Field("ftx", description="W&B project the run goes to (created when missing)")
    entity: str | None = Field(None, description="W&B team or user; default: the logged-in account's default entity")
    name: str | None = Field(None, description="W&B run name; default: the run folder's name")
    group: str | None = Field(None, description="W&B group, e.g. a sweep's name, to compare its runs together")
    tags: list[str] = Field(default_factory=list, description="tags set on the W&B run")
    mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="'auto': the WANDB_MODE environment variable, else online; 'offline' writes the run "
        "under run_dir/wandb for a later `wandb sync`"
    )
    system_metrics: bool = Field(True, description="also record CPU/GPU use and memory (wandb's system monitor)")
    save_files: bool = Field(True, description="attach metrics.json, report.html, curves.png and recipe.lock.toml")


@hookimpl
def ftx_register_loggers(register: Callable[[LoggerSpec], None]) -> None:
    register(LoggerSpec(
        name="wandb",
        summary="Weights & Biases: recipe as config, training curves, before/after figures in the summary.",
        factory="ftx_logger_wandb.tracker:WandbLogger",
        options=WandbOptions,
    ))
