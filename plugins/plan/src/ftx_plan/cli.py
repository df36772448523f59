"""The ``ftx plan`` click command; errors reach ftx's one CLI error handler."""

from __future__ import annotations

import json
from pathlib import Path

import click
from ftx.api import load_stage, plugin_manager


@click.command("plan")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set train.lr=1e-4.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Plan for this device (default: the run's).")
@click.option("--memory-gib", type=float, help="Memory to plan against, in GiB (default: the device's).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--stage", help="For a [[stages]] pipeline: the stage to use.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the hub when the recipe asks for it.")
def plan(recipe_path: Path, overrides: tuple[str, ...], device: str | None, memory_gib: float | None,
         as_json: bool, stage: str | None, trust_remote_code: bool) -> None:
    """Estimate memory for RECIPE from the model's config alone: will it fit, and which knobs make it fit."""
    from .estimate import format_report, plan_report

    manager = plugin_manager()
    recipe = load_stage(recipe_path, overrides, stage, manager=manager)
    report = plan_report(recipe, device, int(memory_gib * 1024**3) if memory_gib else None,
                         registry=manager.registry, trust_remote_code=trust_remote_code)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


def plan_command() -> click.Command:
    """The ``plan`` command (the factory of its CommandSpec)."""
    return plan
