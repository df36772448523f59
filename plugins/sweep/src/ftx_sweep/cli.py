"""The ``ftx sweep`` click command; errors reach ftx's one CLI error handler."""

from __future__ import annotations

from pathlib import Path

import click
from ftx.errors import RunError


@click.command("sweep")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option("--param", "params", multiple=True, required=True, metavar="KEY=DIST(ARGS)",
              help="A searched key: loguniform(lo,hi), uniform(lo,hi), int(lo,hi[,step]) or choice(a,b,...); "
                   "e.g. train.lr=loguniform(1e-5,1e-3). Repeat for more keys.")
@click.option("--trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Finished trials wanted in the study (a resumed sweep runs only the missing ones).")
@click.option("--metric", required=True,
              help="An evaluator (exact-match = after.exact-match.exact_match), EVALUATOR.FIGURE, or a metrics.json "
                   "path such as after.loss.loss.")
@click.option("--direction", type=click.Choice(["maximize", "minimize"]),
              help="Default: minimize losses, perplexities and durations, maximize anything else.")
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Sweep folder (default: sweeps/<recipe name>); holds study.db and trial-<n>/ run folders.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set train.lr=1e-4.")
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True,
              help="Optuna sampler, seeded with --seed.")
@click.option("--seed", type=int, help="Sampler seed (default: the recipe's train.seed).")
@click.option("--pruner", type=click.Choice(["median", "none"]), default="median", show_default=True,
              help="Stop trials whose validation loss (train.eval_every) is worse than the median at that step.")
@click.option("--prune-after", type=click.IntRange(min=0), default=2, show_default=True,
              help="Finished trials before pruning starts.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Run the recipe as written as trial 0, to compare the best trial with it.")
@click.option("--storage", metavar="URL",
              help="Keep the study in this database so several workers share it: sqlite:///path/study.db on one "
                   "machine, a PostgreSQL or MySQL URL across machines. Each worker keeps its run folders in its "
                   "own --output; all stop when the study holds --trials finished trials.")
@click.option("--heartbeat", type=click.IntRange(min=1), default=30, show_default=True, metavar="SECONDS",
              help="With --storage: how often a worker records that its trial is alive; a trial silent for three "
                   "heartbeats (its worker was killed) is retried by another worker.")
@click.option("--resume", is_flag=True, help="Continue the sweep in --output (also automatic when it holds one).")
@click.option("--overwrite", is_flag=True, help="Delete the sweep in --output and start over.")
def sweep(recipe_path: Path, params: tuple[str, ...], trials: int, metric: str, direction: str | None,
          output: Path | None, overrides: tuple[str, ...], sampler: str, seed: int | None, pruner: str,
          prune_after: int, baseline: bool, storage: str | None, heartbeat: int, resume: bool,
          overwrite: bool) -> None:
    """Search hyperparameters of RECIPE with Optuna: one run folder per trial, best recipe in best.toml."""
    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    from .study import SweepConfig, parse_params, run_sweep

    config = SweepConfig(
        recipe_path=recipe_path, params=parse_params(params), metric_name=metric, trials=trials,
        output=(output or Path("sweeps") / recipe_path.stem).expanduser().resolve(), direction=direction,
        overrides=overrides, sampler=sampler, seed=seed, pruner=pruner, prune_after=prune_after, baseline=baseline,
        storage=storage, heartbeat=heartbeat)
    summary = run_sweep(config, resume=resume, overwrite=overwrite, echo=lambda m: click.echo(m, err=True))
    click.echo(f"summary: {config.output / 'summary.md'}"
               + (f"\nbest recipe: {config.output / 'best.toml'}" if summary.get("best") else ""))
    if not summary.get("best"):
        raise RunError(f"no trial completed; see the error.txt of each trial in {config.output}")


def sweep_command() -> click.Command:
    """The ``sweep`` command (the factory of its CommandSpec)."""
    return sweep
