"""Bad [method] values fail at validation, each naming its TOML key; no torch needed."""

from __future__ import annotations

import pytest
from ftx.errors import RecipeError
from ftx.recipe import load_recipe
from ftx.testing import tiny_model_recipe_table


def _recipe(method: dict) -> dict:
    return {
        "model": tiny_model_recipe_table(),
        "data": {"format": "alpaca", "train": "train.jsonl"},
        "method": method,
        "objective": {"use": "sft"},
    }


@pytest.fixture
def check(plugin_manager, write_recipe, tmp_path):
    (tmp_path / "train.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n', encoding="utf-8")

    def run(method: dict) -> str:
        path = write_recipe(_recipe(method))
        with pytest.raises(RecipeError) as info:
            load_recipe(path, plugin_manager.registry)
        return str(info.value)

    return run


@pytest.mark.parametrize(
    ("method", "key"),
    [
        ({"use": "lora", "r": 0}, "method.r"),
        ({"use": "lora", "r": -4}, "method.r"),
        ({"use": "qlora", "r": 0}, "method.r"),
        ({"use": "lora", "dropout": 1.5}, "method.dropout"),
        ({"use": "lora", "alpha": 0}, "method.alpha"),
        ({"use": "lora", "target_modules": []}, "method.target_modules"),
        ({"use": "lora", "target_modules": "q_proj(("}, "method.target_modules"),
        ({"use": "qlora", "quant_type": "int3"}, "method.quant_type"),
        ({"use": "qlora", "compute_dtype": "float64"}, "method.compute_dtype"),
        ({"use": "lora", "rank": 8}, "method.rank"),
    ],
)
def test_bad_option_names_its_key(check, method, key):
    message = check(method)
    assert f"{key}:" in message


def test_unknown_option_suggests_the_right_name(check):
    assert "did you mean 'dropout'" in check({"use": "lora", "dropuot": 0.1})


def test_good_options_validate_with_defaults(plugin_manager, write_recipe, tmp_path):
    (tmp_path / "train.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n', encoding="utf-8")
    recipe = load_recipe(write_recipe(_recipe({"use": "qlora", "r": 8, "target_modules": "all-linear"})),
                         plugin_manager.registry)
    opts = recipe.method.options
    assert (opts.r, opts.scale_alpha, opts.quant_type, opts.double_quant) == (8, 16.0, "nf4", True)
    assert load_recipe(write_recipe(_recipe({"use": "dora"})), plugin_manager.registry).method.options.use_dora
