"""Built-in plugin: prints training metrics to the terminal as they are logged."""

from __future__ import annotations

from collections.abc import Mapping

import click
from ftx_hookspecs import RunContext, hookimpl

SHOWN = ("loss", "eval_loss", "lr", "grad_norm")


@hookimpl
def ftx_log_metrics(run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
    """Echo the main figures of a logged step on one line."""
    shown = [f"{k}={metrics[k]:.4g}" for k in SHOWN if k in metrics]
    if shown:
        click.echo(f"  step {step:>5}  " + "  ".join(shown), err=True)
