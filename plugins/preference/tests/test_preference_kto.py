"""KTO learns from each pair's answers one at a time, and moves held-out preferences like DPO does."""

from __future__ import annotations

import pytest
from ftx_hookspecs import PreferenceExample


def test_each_pair_gives_a_desirable_and_an_undesirable_answer_in_turn(tiny_tokenizer):
    from ftx_preference.kto import unpaired_rows

    pairs = [PreferenceExample(prompt=[{"role": "user", "content": f"q{i}"}], chosen=f"good{i}", rejected=f"bad{i}")
             for i in range(2)]
    rows = unpaired_rows(pairs, tiny_tokenizer, prompt_budget=32)
    assert [(r["completion"][0]["content"], r["label"]) for r in rows] == [
        ("good0", True), ("bad0", False), ("good1", True), ("bad1", False)]
    assert rows[0]["prompt"] == rows[1]["prompt"] == [{"role": "user", "content": "q0"}]


@pytest.mark.slow
def test_kto_raises_held_out_margin_and_preference_share(preference_file, preference_recipe, write_recipe,
                                                         run_recipe, tmp_path):
    recipe = write_recipe(preference_recipe(preference_file, {"use": "kto", "beta": 0.5}, max_steps=120, lr=1e-3))
    metrics = run_recipe(recipe, output=tmp_path / "kto")
    before, after = metrics["before"]["preference"], metrics["after"]["preference"]
    assert after["margin"] > before["margin"] + 1.0
    assert after["accuracy"] >= before["accuracy"] + 0.1
    assert metrics["train"]["pairs"] > 0 and (tmp_path / "kto" / "model" / "config.json").exists()
