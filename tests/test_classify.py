"""The classify objective: a classification head sized from the data, trained, scored, saved and reloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from ftx.demo_data import classification_rows, write_jsonl
from ftx.errors import RecipeError
from ftx.testing import tiny_recipe


def _recipe(tmp_path: Path, write_recipe, *, method: str = "full", steps: int = 60, objective="classify",
            labels: list[str] | None = None, name: str = "classify.toml") -> Path:
    data = write_jsonl(classification_rows(240, seed=1), tmp_path / "classify.jsonl")
    recipe = tiny_recipe(data, "classification", method=method, objective=objective, evaluators=["accuracy", "f1"],
                         steps=steps, train={"batch_size": 16, "lr": 3e-3},
                         data={"max_length": 16, **({"labels": labels} if labels else {})})
    return write_recipe(recipe, name=name)


@pytest.mark.slow
def test_a_classifier_learns_the_labels_and_saves_a_plain_transformers_model(tmp_path, write_recipe, run_recipe):
    metrics = run_recipe(_recipe(tmp_path, write_recipe), output=tmp_path / "run")
    assert metrics["before"]["accuracy"]["accuracy"] < 0.6  # three classes: near chance
    assert metrics["after"]["accuracy"]["accuracy"] > 0.9 and metrics["after"]["f1"]["f1"] > 0.9

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "run" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == {0: "early", 1: "late", 2: "middle"}  # no labels declared: sorted
    logits = model(**tokenizer(["a b c", "z y x"], return_tensors="pt", padding=True)).logits
    assert [model.config.id2label[i] for i in logits.argmax(-1).tolist()] == ["early", "late"]


@pytest.mark.slow
def test_lora_classifier_keeps_its_head_and_ftx_eval_reloads_it(tmp_path, write_recipe, run_recipe):
    from ftx.cli import main

    recipe = _recipe(tmp_path, write_recipe, method="lora", steps=80, labels=["late", "middle", "early"],
                     objective={"use": "classify", "class_weights": "balanced"})
    metrics = run_recipe(recipe, output=tmp_path / "run")
    after = metrics["after"]["accuracy"]["accuracy"]
    assert after > metrics["before"]["accuracy"]["accuracy"] + 0.2
    adapter = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS"

    result = CliRunner().invoke(main, ["eval", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["eval"]["accuracy"]["accuracy"] == pytest.approx(after)  # the declared label order was kept


def test_balanced_weights_count_every_class_alike():
    from ftx_sft.classify import balanced_weights

    assert balanced_weights([0, 0, 0, 1], classes=3) == [4 / 9, 4 / 3, 1.0]


def test_class_labels_come_from_the_declaration_or_the_data(plugin_manager, tmp_path, write_recipe):
    from ftx.data.prepare import prepare_examples
    from ftx.models.loading import class_labels

    recipe = plugin_manager.load_recipe(_recipe(tmp_path, write_recipe))
    data = prepare_examples(recipe.data, recipe.data_format.build(), 0)
    assert class_labels(recipe, data) == ["early", "late", "middle"]
    declared = plugin_manager.load_recipe(_recipe(tmp_path, write_recipe, labels=["late", "early", "middle"],
                                                  name="declared.toml"))
    assert class_labels(declared, data) == ["late", "early", "middle"]


def test_a_chat_format_for_classify_names_the_mismatch(plugin_manager, write_recipe, tiny_dataset):
    path = write_recipe(tiny_recipe(tiny_dataset("alpaca"), objective="classify"))
    with pytest.raises(RecipeError, match="objective 'classify' trains on classification examples"):
        plugin_manager.load_recipe(path)


@pytest.mark.slow
def test_real_sms_spam_trains_a_spam_filter(shared_data, tmp_path, write_recipe, run_recipe):
    """5,574 real SMS (13% spam), nobody here wrote: balanced weights, a few steps, macro-F1 well above chance."""
    recipe = tiny_recipe(shared_data / "SMSSpamCollection.tsv", "classification", objective={"use": "classify",
                         "class_weights": "balanced"}, evaluators=["accuracy", "f1"], steps=60,
                         data={"columns": {"text": "SMS", "label": "Label"}, "labels": ["ham", "spam"],
                               "max_length": 64, "limit": 2000, "eval": 0.1},
                         train={"batch_size": 16, "lr": 3e-3})
    metrics = run_recipe(write_recipe(recipe), output=tmp_path / "run")
    assert metrics["after"]["f1"]["f1"] > 0.8 > metrics["before"]["f1"]["f1"]
