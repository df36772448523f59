"""DPO moves a model towards the chosen answers on held-out pairs, reported before and after."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_dpo_raises_held_out_margin_and_preference_share(preference_file, preference_recipe, write_recipe,
                                                          run_recipe, tmp_path):
    recipe = write_recipe(preference_recipe(preference_file, {"use": "dpo", "beta": 0.5}, max_steps=60, lr=1e-3))
    metrics = run_recipe(recipe, output=tmp_path / "dpo")
    before, after = metrics["before"]["preference"], metrics["after"]["preference"]
    # a model from scratch prefers the shorter, wrong answers at first; DPO turns that around
    assert after["margin"] > before["margin"] + 1.0
    assert after["accuracy"] >= before["accuracy"] + 0.1
    assert (tmp_path / "dpo" / "model" / "config.json").exists()
