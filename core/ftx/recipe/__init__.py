"""Recipes: read a TOML file, apply ``--set`` overrides, validate every key, resolve paths."""

from __future__ import annotations

from .loader import load_recipe, parse_override
from .model import Recipe, Selected

__all__ = ["Recipe", "Selected", "load_recipe", "parse_override"]
