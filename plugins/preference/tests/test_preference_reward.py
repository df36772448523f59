"""The reward objective learns to score correct answers above wrong ones, on held-out pairs."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs(preference_file, preference_recipe, write_recipe, run_recipe, tmp_path):
    recipe = write_recipe(preference_recipe(preference_file, {"use": "reward"}, max_steps=200, lr=2e-3,
                                            scheduler="cosine"))
    metrics = run_recipe(recipe, output=tmp_path / "rm")
    assert metrics["train"]["eval_accuracy"] > 0.8
    # the evaluator sees the same held-out pairs: near chance before, above 0.8 after
    assert metrics["before"]["preference"]["accuracy"] < 0.7
    assert metrics["after"]["preference"]["accuracy"] > 0.8
    config = json.loads((tmp_path / "rm" / "model" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
