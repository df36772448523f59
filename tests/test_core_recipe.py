"""Recipe validation: every key checked, errors name the TOML path and say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from ftx.errors import RecipeError
from ftx.recipe import load_recipe
from ftx.recipe.loader import apply_overrides, parse_override

REPO = Path(__file__).resolve().parents[1]

BASE = """
[model]
name = "builtin:tiny-llama"

[data]
format = "alpaca"
train = "train.jsonl"

[method]
use = "full"

[objective]
use = "sft"
"""


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    (tmp_path / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    return tmp_path


def _load(recipe_dir: Path, text: str, plugin_manager, overrides=()):
    path = recipe_dir / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    return load_recipe(path, plugin_manager.registry, overrides)


def _problems(exc: pytest.ExceptionInfo[RecipeError]) -> dict[str, str]:
    return {p.path: p.message for p in exc.value.problems}


def test_valid_recipe_resolves_paths_against_its_folder(recipe_dir, plugin_manager):
    recipe = _load(recipe_dir, BASE, plugin_manager)
    assert recipe.data.train == str(recipe_dir / "train.jsonl")
    assert recipe.output.dir == str(recipe_dir / "runs" / "run")
    assert recipe.method.name == "full" and recipe.train.lr == pytest.approx(2e-4)


def test_misspelled_key_names_its_path_and_suggests(recipe_dir, plugin_manager):
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE + "\n[train]\nlearning_rat = 1e-4\n", plugin_manager)
    assert _problems(exc) == {"train.learning_rat": "unknown key; did you mean 'lr'?"}


def test_wrong_type_says_what_was_expected(recipe_dir, plugin_manager):
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE + "\n[train]\nbatch_size = 'eight'\n", plugin_manager)
    message = _problems(exc)["train.batch_size"]
    assert "integer" in message and "'eight'" in message


def test_every_problem_is_reported_at_once(recipe_dir, plugin_manager):
    text = BASE.replace('use = "full"', 'use = "full"\nfreeze_layer = 1') + "\n[train]\nepochs = -1\n[outptu]\ndir='x'\n"
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, text, plugin_manager)
    problems = _problems(exc)
    assert problems["method.freeze_layer"] == "unknown key; did you mean 'freeze_layers'?"
    assert "greater than 0" in problems["train.epochs"]
    assert problems["outptu"] == "unknown table; did you mean 'output'?"


def test_unknown_method_lists_installed_ones(recipe_dir, plugin_manager):
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE.replace('use = "full"', 'use = "fulll"'), plugin_manager)
    message = _problems(exc)["method.use"]
    assert "unknown method 'fulll'" in message and "Did you mean 'full'?" in message
    assert "Installed methods:" in message and "full" in message


def test_method_of_a_missing_distribution_says_what_to_install(recipe_dir, plugin_manager):
    plugin_manager.registry.components["method"].pop("lora", None)
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE.replace('use = "full"', 'use = "lora"'), plugin_manager)
    message = _problems(exc)["method.use"]
    assert "'ftx-lora'" in message and "pip install ftx-lora" in message


def test_plugin_options_are_validated_by_the_plugin(recipe_dir, plugin_manager):
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE.replace('use = "full"', 'use = "full"\nfreeze_layers = -2'), plugin_manager)
    assert "greater than or equal to 0" in _problems(exc)["method.freeze_layers"]


def test_data_keys_mix_core_and_format_options(recipe_dir, plugin_manager):
    recipe = _load(recipe_dir, BASE.replace('train = "train.jsonl"', 'train = "train.jsonl"\nsystem = "Be brief."'), plugin_manager)
    assert recipe.data_format.options.system == "Be brief."
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE.replace('train = "train.jsonl"', 'train = "train.jsonl"\nmax_lenght = 9'), plugin_manager)
    assert _problems(exc) == {"data.max_lenght": "unknown key; did you mean 'max_length'?"}


def test_missing_data_file_is_named(recipe_dir, plugin_manager):
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE.replace("train.jsonl", "nope.jsonl"), plugin_manager)
    assert _problems(exc)["data.train"].startswith("file not found:")


def test_objective_and_format_must_agree(recipe_dir, plugin_manager):
    with pytest.raises(RecipeError) as exc:
        _load(recipe_dir, BASE.replace('format = "alpaca"', 'format = "preference"'), plugin_manager)
    assert "trains on chat examples" in _problems(exc)["data.format"]


def test_set_overrides_any_key(recipe_dir, plugin_manager):
    recipe = _load(recipe_dir, BASE, plugin_manager, ["train.lr=1e-4", "train.max_steps=7", "output.dir=elsewhere"])
    assert recipe.train.lr == pytest.approx(1e-4)
    assert recipe.train.max_steps == 7
    assert recipe.output.dir == str(recipe_dir / "elsewhere")


def test_set_parses_toml_values_and_keeps_bare_words_as_strings():
    assert parse_override("train.lr=1e-4") == (["train", "lr"], 1e-4)
    assert parse_override("data.packing=true") == (["data", "packing"], True)
    assert parse_override("method.use=lora") == (["method", "use"], "lora")
    data = apply_overrides({"evaluators": [{"use": "loss"}]}, ["evaluators.0.limit=5"])
    assert data == {"evaluators": [{"use": "loss", "limit": 5}]}
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        parse_override("train.lr")


def test_toml_syntax_error_names_the_file(recipe_dir, plugin_manager):
    with pytest.raises(RecipeError, match="recipe.toml is not valid TOML"):
        _load(recipe_dir, "[model\nname=1", plugin_manager)


def test_shipped_recipes_validate(plugin_manager):
    for path in sorted((REPO / "recipes").glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        needed = [n for n in ("lora", "qlora", "dpo", "reward", "rl") if f'use = "{n}"' in text]
        missing = [n for n in needed if n not in plugin_manager.registry.names("method") + plugin_manager.registry.names("objective")]
        if missing:
            continue  # that recipe's plugin distribution is not installed here
        load_recipe(path, plugin_manager.registry)
