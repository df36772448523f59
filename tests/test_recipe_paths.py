"""Paths in recipe messages are normalised: no ``recipes/../..`` for the user to untangle."""

from __future__ import annotations

import pytest
from ftx.errors import RecipeError
from ftx.recipe import load_recipe

from ftx.testing import recipe_text, tiny_recipe


def test_a_missing_data_file_is_named_by_its_normalised_path(tmp_path, plugin_manager):
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    recipe = folder / "r.toml"
    recipe.write_text(recipe_text(tiny_recipe("../../data/missing.jsonl")), encoding="utf-8")
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe, plugin_manager.registry)
    (problem,) = [str(p) for p in caught.value.problems]
    assert problem == f"data.train: file not found: {tmp_path / 'data' / 'missing.jsonl'}"
