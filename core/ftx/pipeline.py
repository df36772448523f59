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

import copy
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FtxError, Problem, RecipeError, RunError
from .recipe.model import Recipe
from .registry import Registry

STAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
STAGE_REF = "stage:"
MERGED_TABLES = ("model", "data", "train", "evaluation", "output")
BUILTIN_ONLY_MODEL_KEYS = ("config", "pretrain_steps")


@dataclass
class Stage:
    """One stage: its name, the merged recipe data, and the validated recipe."""

    name: str
    data: dict[str, Any]
    recipe: Recipe


@dataclass
class Pipeline:
    """A validated pipeline recipe: stages in order, each a complete recipe."""

    stages: list[Stage]
    raw: dict[str, Any]
    output_dir: Path
    path: Path | None = None
    registry: Registry | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every stage's resolved recipe, in order."""
        return {"stages": [{"name": s.name, **s.recipe.to_dict()} for s in self.stages]}

    def describe(self) -> str:
        """One line per stage: what it trains, for ``ftx validate``."""
        lines = []
        for stage in self.stages:
            r = stage.recipe
            lines.append(f"  stage {stage.name}: model={r.model.name}; method={r.method.name}; "
                         f"objective={r.objective.name}; format={r.data_format.name}"
                         + (f"; evaluators={','.join(e.name for e in r.evaluators)}" if r.evaluators else ""))
        return "\n".join(lines)


def is_pipeline(data: Mapping[str, Any]) -> bool:
    """True for recipe data with ``[[stages]]``."""
    return "stages" in data


def merge_stage(base: Mapping[str, Any], stage: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe data of one stage: ``base`` with the stage's tables merged or replacing (see module doc)."""
    merged = {k: copy.deepcopy(v) for k, v in base.items() if k != "stages"}
    for key, value in stage.items():
        if key == "name":
            continue
        if key in MERGED_TABLES and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            table = dict(merged[key])
            table.update(copy.deepcopy(dict(value)))
            if key == "model" and "name" in value and not str(value["name"]).startswith("builtin:"):
                for builtin_key in BUILTIN_ONLY_MODEL_KEYS:
                    if builtin_key not in value:
                        table.pop(builtin_key, None)
            merged[key] = table
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _substitute(value: Any, replace: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return replace(value) if value.startswith(STAGE_REF) else value
    if isinstance(value, Mapping):
        return {k: _substitute(v, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, replace) for v in value]
    return value


def _references(value: Any) -> list[str]:
    found: list[str] = []
    _substitute(value, lambda s: found.append(s[len(STAGE_REF):]) or s)
    return found


def stage_folder(run_dir: Path, name: str) -> Path:
    """Where a stage's run folder lives."""
    return Path(run_dir) / "stages" / name


def build_pipeline(
    data: Mapping[str, Any], registry: Registry, *, path: Path | None = None, run_dir: Path | None = None
) -> Pipeline:
    """Validate every stage as a complete recipe; raise all problems at once, each naming its stage.

    With ``run_dir``, ``"stage:<name>"`` references become that stage's model folder; without, they
    are only checked to name an earlier stage.
    """
    from .recipe.loader import build_recipe

    source = str(path) if path is not None else None
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise RecipeError(Problem("stages", "must be a non-empty array of tables: [[stages]] name = \"...\""), source)
    problems: list[Problem] = []
    stages: list[Stage] = []
    seen: list[str] = []
    base_dir = path.parent.resolve() if path is not None else Path.cwd()
    top_output = data.get("output", {}) if isinstance(data.get("output"), Mapping) else {}
    out = Path(str(top_output.get("dir", "runs/run"))).expanduser()
    output_dir = out if out.is_absolute() else base_dir / out
    for index, table in enumerate(raw_stages):
        where = f"stages[{index}]"
        if not isinstance(table, Mapping):
            problems.append(Problem(where, "must be a table with a name"))
            continue
        name = table.get("name")
        if not isinstance(name, str) or not STAGE_NAME.match(name):
            problems.append(Problem(f"{where}.name", "is required: lowercase letters, digits, '-' or '_'"))
            continue
        if name in seen:
            problems.append(Problem(f"{where}.name", f"stage {name!r} is defined twice"))
            continue
        where = f"{where} ({name})"
        unknown = [k for k in table if k != "name" and k not in _stage_tables()]
        for key in unknown:
            from .recipe.loader import did_you_mean

            problems.append(Problem(f"{where}.{key}", "unknown table" + did_you_mean(key, _stage_tables())))
        if "output" in table:
            problems.append(Problem(f"{where}.output", "a stage's run folder is <run dir>/stages/<name>; set [output] at the top"))
        merged = merge_stage(data, table)
        for ref in _references(merged):
            if ref not in seen:
                problems.append(Problem(where, f"'stage:{ref}' must name an earlier stage (earlier: {', '.join(seen) or 'none'})"))
        if run_dir is not None:
            merged = _substitute(merged, lambda s: str(stage_folder(run_dir, s[len(STAGE_REF):]) / "model"))
        merged.setdefault("output", {})
        merged["output"] = {**merged["output"], "dir": str(stage_folder(run_dir or output_dir, name))}
        seen.append(name)
        if unknown or any(p.path.startswith(where) for p in problems):
            continue
        try:
            recipe = build_recipe(merged, registry, path=path)
        except RecipeError as exc:
            problems.extend(Problem(f"{where}: {p.path}" if p.path else where, p.message) for p in exc.problems)
            continue
        stages.append(Stage(name, merged, recipe))
    if problems:
        raise RecipeError(problems, source)
    return Pipeline(stages, dict(data), output_dir, path, registry)


def _stage_tables() -> list[str]:
    from .recipe.schema import TOP_LEVEL

    return [k for k in TOP_LEVEL if k != "stages"]


def finished(folder: Path) -> bool:
    """A stage finished when its run folder holds metrics.json and a model."""
    return (folder / "metrics.json").exists() and (folder / "model").is_dir()


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

    run_dir = prepare_run_dir(Path(output) if output else pipeline.output_dir, overwrite=overwrite, resume=resume)
    resolved = build_pipeline(pipeline.raw, pipeline.registry or manager.registry, path=pipeline.path, run_dir=run_dir)
    write_text_atomic(run_dir / "recipe.lock.toml", dumps({
        "pipeline": {"recipe_file": str(pipeline.path) if pipeline.path else None,
                     "stages": [s.name for s in resolved.stages]},
        **resolved.to_dict(),
    }))
    started = time.perf_counter()
    summary: dict[str, Any] = {"stages": {}, "status": "running"}
    previous = _read_json(run_dir / "metrics.json") if resume else None
    upstream_ran = False  # once a stage trains, the stages after it start from a new model: none is skipped
    for stage in resolved.stages:
        folder = stage_folder(run_dir, stage.name)
        entry: dict[str, Any] = {"run_dir": str(folder), "objective": stage.recipe.objective.name}
        if resume and finished(folder):
            changed = _changes(folder, stage.recipe, manager)
            if not upstream_ran and not changed:
                metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
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
            write_json(run_dir / "metrics.json", summary)
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
        write_json(run_dir / "metrics.json", {**summary, "seconds": round(time.perf_counter() - started, 2)})
    summary["status"] = "done"
    summary["seconds"] = round(time.perf_counter() - started, 2)
    write_json(run_dir / "metrics.json", summary)
    return summary


def _changes(folder: Path, recipe: Recipe, manager: Any) -> list[str]:
    """The recipe keys that differ from those a stage folder was started with (``["recipe.lock.toml"]`` when
    it has none): empty when its checkpoints can continue or its results stand."""
    from .runner import lock_data, recipe_changes

    lock = folder / "recipe.lock.toml"
    if not lock.exists():
        return ["recipe.lock.toml"]
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
