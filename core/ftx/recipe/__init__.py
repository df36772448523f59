"""Recipes: read a TOML file, apply ``--set`` overrides, validate every key, resolve paths."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..registry import Registry
from .loader import apply_overrides, build_recipe, parse_override
from .model import Recipe, Selected
from .stages import Pipeline, build_pipeline, is_pipeline
from .toml_io import read_toml

__all__ = ["Pipeline", "Recipe", "Selected", "load_recipe", "parse_override"]


def load_recipe(path: Path | str, registry: Registry, overrides: Iterable[str] = ()) -> Recipe | Pipeline:
    """Read, override and validate a recipe file: one run, or a pipeline of ``[[stages]]``."""
    path = Path(path)
    data = apply_overrides(read_toml(path), overrides)
    if is_pipeline(data):  # every stage is validated as a recipe of its own
        return build_pipeline(data, registry, path=path)
    return build_recipe(data, registry, path=path)
