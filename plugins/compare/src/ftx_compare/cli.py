"""The ``ftx runs`` and ``ftx compare`` click commands; errors reach ftx's one CLI error handler."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .folders import compare_runs, format_compare, format_runs, list_runs


@click.command("runs")
@click.argument("directory", metavar="[DIR]", required=False, default="runs", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(directory: Path, as_json: bool) -> None:
    """List run folders under DIR (default: runs) with status, method, objective, after-metrics and seconds."""
    rows = list_runs(directory)
    click.echo(json.dumps(rows, indent=2) if as_json else format_runs(rows))


@click.command("compare")
@click.argument("run_a", metavar="A", type=click.Path(path_type=Path))
@click.argument("run_b", metavar="B", type=click.Path(path_type=Path))
@click.option("--only-diff", is_flag=True, help="Show only the recipe keys and metrics that differ.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare(run_a: Path, run_b: Path, only_diff: bool, as_json: bool) -> None:
    """Show two runs' recipes (differing keys marked *) and metrics (with B - A) side by side."""
    result = compare_runs(run_a, run_b)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    color = sys.stdout.isatty()
    click.echo(format_compare(result, only_diff=only_diff, color=color), color=color)


def runs_command() -> click.Command:
    """The ``runs`` command (the factory of its CommandSpec)."""
    return runs


def compare_command() -> click.Command:
    """The ``compare`` command (the factory of its CommandSpec)."""
    return compare
