"""The gate: conditions parse, unknown metrics fail validation with their TOML path, failures name the threshold."""

from __future__ import annotations

from typing import Any

import pytest
from ftx.errors import RecipeError
from ftx.gate import GATE_EXIT_CODE, check_gate, gate_failure, parse_condition, parse_gate
from ftx.recipe import load_recipe
from ftx.testing import tiny_model_recipe_table


@pytest.mark.parametrize("raw, expected", [
    (">= 0.8", (">=", 0.8)), ("<3", ("<", 3.0)), ("<= 10%", ("<=", 0.1)), (0.5, (">=", 0.5)), ("== 1", ("==", 1.0)),
])
def test_conditions(raw: Any, expected: tuple[str, float]) -> None:
    assert parse_condition(raw) == expected


@pytest.mark.parametrize("raw", ["at least 0.8", "=> 1", True, [1]])
def test_bad_conditions(raw: Any) -> None:
    assert parse_condition(raw) is None


def test_dotted_and_quoted_keys_mean_the_same_metric() -> None:
    names = ["exact-match", "loss"]
    nested, problems = parse_gate({"exact-match": {"exact_match": ">= 0.8"}, "forgetting": "<= 10%"}, names)
    quoted, _ = parse_gate({"exact-match.exact_match": ">= 0.8", "forgetting": "<= 10%"}, names)
    assert not problems and nested == quoted


def test_check_and_failure_message_name_each_failed_threshold() -> None:
    thresholds, _ = parse_gate({"exact-match.exact_match": ">= 0.8", "loss.perplexity": "< 3",
                                "baseline.exact-match.exact_match": "<= 0.5", "forgetting": "<= 10%"},
                               ["exact-match", "loss"])
    metrics = {"after": {"exact-match": {"exact_match": 0.9}, "loss": {"perplexity": 4.0}},
               "baseline": {"exact-match": {"exact_match": 0.2}}, "forgetting": {"increase": 0.25}}
    gate = check_gate(thresholds, metrics, ["exact-match", "loss"])
    assert [c["passed"] for c in gate["checks"]] == [True, False, True, False]
    error = gate_failure({"gate": gate})
    assert error is not None and error.exit_code == GATE_EXIT_CODE
    assert "loss.perplexity < 3: got 4" in str(error) and "forgetting <= 0.1: got 0.25" in str(error)
    assert "exact-match.exact_match" not in str(error)
    assert gate_failure({"gate": check_gate(thresholds[:1], metrics, ["exact-match"])}) is None


def _recipe(tmp_path, gate: dict[str, Any], **evaluation: Any) -> Any:  # type: ignore[no-untyped-def]
    from ftx.testing import recipe_text

    (tmp_path / "d.jsonl").write_text('{"instruction": "x", "output": "y"}\n' * 4)
    path = tmp_path / "r.toml"
    path.write_text(recipe_text({
        "model": tiny_model_recipe_table(), "data": {"format": "alpaca", "train": "d.jsonl", "eval": 0.5},
        "method": {"use": "full"}, "objective": {"use": "sft"},
        "evaluators": [{"use": "exact-match"}], "evaluation": {"gate": gate, **evaluation},
    }))
    return path


def test_gate_of_an_unselected_evaluator_names_the_key(tmp_path, plugin_manager) -> None:  # type: ignore[no-untyped-def]
    path = _recipe(tmp_path, {"rouge": {"rouge1": ">= 0.5"}, "exact-match": {"exact_match": "at least 1"}},
                   early_stopping_patience=2)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugin_manager.registry)
    paths = {p.path for p in info.value.problems}
    assert {"evaluation.gate.rouge.rouge1", "evaluation.gate.exact-match.exact_match",
            "evaluation.early_stopping_patience"} <= paths
    assert "train.eval_every" in str(info.value)


def test_valid_gate_loads(tmp_path, plugin_manager) -> None:  # type: ignore[no-untyped-def]
    recipe = load_recipe(_recipe(tmp_path, {"exact-match.exact_match": ">= 0.8"}), plugin_manager.registry)
    assert recipe.to_dict()["evaluation"]["gate"] == {"exact-match.exact_match": ">= 0.8"}
