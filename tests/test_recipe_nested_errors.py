"""A component's options validated inside another's (an evaluator's or RL objective's rewards) fail
with the same one-line, full-path messages as top-level keys."""

from __future__ import annotations

import pytest
from ftx.errors import RecipeError
from ftx.recipe import load_recipe

from ftx.testing import tiny_recipe


def _problems(path, plugin_manager) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, plugin_manager.registry)
    return [str(p) for p in caught.value.problems]


def test_a_nested_reward_option_error_names_its_full_path(tiny_dataset, write_recipe, plugin_manager):
    data = tiny_dataset("alpaca")
    rewards = [{"use": "exact-match"}, {"use": "length-penalty", "max": -3, "colour": "red"}]
    recipe = write_recipe(tiny_recipe(data, evaluators=[{"use": "reward", "rewards": rewards}]))
    problems = _problems(recipe, plugin_manager)
    assert any(p.startswith("evaluators[0].rewards[1].max: ") and "greater than 0" in p for p in problems), problems
    assert any(p.startswith("evaluators[0].rewards[1].colour: unknown key") for p in problems), problems
    assert not any("Value error" in p or ": -:" in p for p in problems), problems


def test_an_unknown_nested_reward_names_its_use_key(tiny_dataset, write_recipe, plugin_manager):
    data = tiny_dataset("alpaca")
    recipe = write_recipe(tiny_recipe(data, evaluators=[{"use": "reward", "rewards": [{"use": "exact-mach"}]}]))
    (problem,) = _problems(recipe, plugin_manager)
    assert problem.startswith("evaluators[0].rewards[0].use: unknown reward 'exact-mach'. Did you mean 'exact-match'?")
