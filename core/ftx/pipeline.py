"""Pipelines: several runs as stages of one recipe (SFT -> reward model -> RL), in one command.

A recipe with ``[[stages]]`` is a pipeline. Its top-level tables are shared defaults; each stage
has a ``name`` and the tables it changes::

    [model]
    name = "builtin:tiny-llama"
    [data]
    format = "alpaca"
    train = "data/tasks.jsonl"
    [method]
    use = "full"
    [objective]
    use = "sft"

    [[stages]]
    name = "sft"                      # the top-level recipe as it is

    [[stages]]
    name = "reward"
    model.name = "builtin:tiny-llama"
    data = {format = "preference", train = "data/preference.jsonl"}
    objective = {use = "reward"}

    [[stages]]
    name = "rl"
    model.name = "stage:sft"          # the model an earlier stage trained
    objective = {use = "rl", reward_model = "stage:reward"}

Merging: plain tables (``model``, ``data``, ``train``, ``evaluation``, ``output``) merge key by key
with the top-level ones; component tables (``method``, ``objective``) and the ``evaluators`` list
replace them. A stage whose ``model.name`` is not a built-in drops the built-in-only keys
(``config``, ``pretrain_steps``) it inherited. Any string ``"stage:<name>"`` becomes the model
folder of that earlier stage.

Each stage is a normal run in ``<run dir>/stages/<name>``. A failed stage stops the pipeline;
``--resume`` skips the stages that finished and runs the rest; a finished stage whose recipe changed
runs again, and so does every stage after it. The run folder's ``metrics.json``
summarises every stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import FtxError, RunError
from .layout import LOCK, METRICS, MODEL
from .recipe.model import Recipe
from .recipe.stages import (  # noqa: F401 - re-exported: the pipeline's recipe side
    STAGE_REF,
    Pipeline,
    Stage,
    build_pipeline,
    is_pipeline,
    merge_stage,
    stage_folder,
)


def finished(folder: Path) -> bool:
    """A stage finished when its run folder holds metrics.json and a model."""
    return (folder / METRICS).exists() and (folder / MODEL).is_dir()


def run_pipeline(
    pipeline: Pipeline,
    manager: Any,
    *,
    output: Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    trust_remote_code: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the stages in order; return (and write to ``metrics.json``) the summary of every stage."""
    import json

    from .recipe.toml_io import dumps
    from .rundir import prepare_run_dir, write_json, write_text_atomic
    from .runner import run_recipe

    target = Path(output) if output else pipeline.output_dir
    if overwrite:  # the old run goes only once every stage's data is known to be usable
        from .data.prepare import prepare_examples
        from .rundir import check_run_dir

        check_run_dir(target, overwrite=True)
        for stage in pipeline.stages:
            prepare_examples(stage.recipe.data, stage.recipe.data_format.build(), stage.recipe.train.seed)
    run_dir = prepare_run_dir(target, overwrite=overwrite, resume=resume)
    resolved = build_pipeline(pipeline.raw, pipeline.registry or manager.registry, path=pipeline.path, run_dir=run_dir)
    write_text_atomic(run_dir / LOCK, dumps({
        "pipeline": {"recipe_file": str(pipeline.path) if pipeline.path else None,
                     "stages": [s.name for s in resolved.stages]},
        **resolved.to_dict(),
    }))
    started = time.perf_counter()
    summary: dict[str, Any] = {"stages": {}, "status": "running"}
    previous = _read_json(run_dir / METRICS) if resume else None
    upstream_ran = False  # once a stage trains, the stages after it start from a new model: none is skipped
    for stage in resolved.stages:
        folder = stage_folder(run_dir, stage.name)
        entry: dict[str, Any] = {"run_dir": str(folder), "objective": stage.recipe.objective.name}
        if resume and finished(folder):
            changed = _changes(folder, stage.recipe, manager)
            if not upstream_ran and not changed:
                metrics = json.loads((folder / METRICS).read_text(encoding="utf-8"))
                old = (previous or {}).get("stages", {}).get(stage.name, {})
                summary["stages"][stage.name] = {**entry, "status": "done", "resumed": True,
                                                 "seconds": old.get("seconds"), **_figures(metrics)}
                echo(f"== stage {stage.name}: finished earlier, skipped ({folder})")
                continue
            why = (f"its recipe changed since it finished ({', '.join(changed)})" if changed
                   else "a stage before it ran again")
            echo(f"== stage {stage.name}: finished earlier, but {why}: running it again")
        echo(f"== stage {stage.name} ({stage.recipe.objective.name}) -> {folder}")
        stage_started = time.perf_counter()
        fresh_input, upstream_ran = upstream_ran, True
        try:
            again = folder.exists() and any(folder.iterdir())
            # --resume continues an interrupted stage from its checkpoints when its recipe and every
            # stage before it are unchanged; otherwise the stage starts afresh
            go_on = (again and resume and not fresh_input and not finished(folder)
                     and not _changes(folder, stage.recipe, manager))
            metrics = run_recipe(stage.recipe, manager, output=folder, overwrite=again and not go_on,
                                 resume=go_on, trust_remote_code=trust_remote_code, echo=echo)
            failed = _gate(metrics)
            if failed is not None:
                raise failed
        except BaseException as exc:
            summary["stages"][stage.name] = {**entry, "status": "failed", "error": str(exc)[:4000],
                                             "seconds": round(time.perf_counter() - stage_started, 2)}
            summary["status"] = "failed"
            summary["seconds"] = round(time.perf_counter() - started, 2)
            write_json(run_dir / METRICS, summary)
            done = [n for n, s in summary["stages"].items() if s["status"] == "done"]
            hint = (f"; fix it and rerun with --resume to continue after stage {done[-1]!r}" if done
                    else "; fix it and rerun with --resume")
            if isinstance(exc, FtxError):
                exc.args = (f"stage {stage.name!r} failed: {exc}{hint}",)
                raise
            if not isinstance(exc, Exception):
                raise
            raise RunError(f"stage {stage.name!r} failed: {type(exc).__name__}: {exc}{hint}") from exc
        summary["stages"][stage.name] = {**entry, "status": "done",
                                         "seconds": round(time.perf_counter() - stage_started, 2), **_figures(metrics)}
        write_json(run_dir / METRICS, {**summary, "seconds": round(time.perf_counter() - started, 2)})
    summary["status"] = "done"
    summary["seconds"] = round(time.perf_counter() - started, 2)
    write_json(run_dir / METRICS, summary)
    return summary


def _changes(folder: Path, recipe: Recipe, manager: Any) -> list[str]:
    """The recipe keys that differ from those a stage folder was started with (``["recipe.lock.toml"]`` when
    it has none): empty when its checkpoints can continue or its results stand."""
    from .runner import lock_data, recipe_changes

    lock = folder / LOCK
    if not lock.exists():
        return [LOCK]
    return recipe_changes(lock, lock_data(recipe, manager))


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {"before": metrics.get("before", {}), "after": metrics.get("after", {}), "train": metrics.get("train", {})}


def _gate(metrics: Mapping[str, Any]) -> FtxError | None:
    try:
        from .gate import gate_failure
    except ImportError:  # pragma: no cover - the gate ships with the core
        return None
    return gate_failure(dict(metrics))


def summary_text(summary: Mapping[str, Any], run_dir: Path) -> str:
    """The pipeline's closing lines: each stage's before -> after figures."""
    lines = ["", f"pipeline {summary.get('status')} in {summary.get('seconds', 0):.0f}s: {run_dir}"]
    for name, stage in summary.get("stages", {}).items():
        lines.append(f"  stage {name} ({stage.get('objective')}): {stage.get('status')}"
                     + (" (finished earlier)" if stage.get("resumed") else ""))
        for evaluator, after in stage.get("after", {}).items():
            before = stage.get("before", {}).get(evaluator, {})
            for key, value in after.items():
                was = before.get(key)
                arrow = f"{was:.4g} -> {value:.4g}" if isinstance(was, (int, float)) else f"{value:.4g}"
                lines.append(f"    {evaluator} {key}: {arrow}")
    lines.append(f"  metrics: {Path(run_dir) / 'metrics.json'}")
    return "\n".join(lines)
