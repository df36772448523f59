"""Validation of pipeline recipes (``[[stages]]``): each stage merged with the shared tables and
validated as a complete recipe. Running the stages is :mod:`ftx.pipeline`'s job; this module is
pure recipe work, so the recipe loader can build pipelines without depending on the runner.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem, RecipeError
from ..layout import MODEL
from ..registry import Registry
from .model import Recipe

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
        return "\n".join(f"  stage {s.name}: model={s.recipe.model.name}; {s.recipe.summary()}" for s in self.stages)


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
    from .loader import build_recipe

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
            from .loader import did_you_mean

            problems.append(Problem(f"{where}.{key}", "unknown table" + did_you_mean(key, _stage_tables())))
        if "output" in table:
            problems.append(Problem(f"{where}.output", "a stage's run folder is <run dir>/stages/<name>; set [output] at the top"))
        merged = merge_stage(data, table)
        for ref in _references(merged):
            if ref not in seen:
                problems.append(Problem(where, f"'stage:{ref}' must name an earlier stage (earlier: {', '.join(seen) or 'none'})"))
        if run_dir is not None:
            merged = _substitute(merged, lambda s: str(stage_folder(run_dir, s[len(STAGE_REF):]) / MODEL))
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
    from .schema import TOP_LEVEL

    return [k for k in TOP_LEVEL if k != "stages"]
