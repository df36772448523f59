"""The preparation cache (reused for the same inputs, rebuilt on any change), splits, and the saved template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftx.data.cache import data_cache_root, tokenize_cached
from ftx.models.templates import BUILTINS, apply_chat_template_choice
from ftx.testing import tiny_model_recipe_table
from tests.test_data_formats import prepare


def _write(path: Path, answers: list[str]) -> Path:
    rows = [{"instruction": f"Say {a}.", "input": "", "output": a} for a in answers]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def home(tmp_path, monkeypatch, ftx_home):
    monkeypatch.setenv("FTX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _tokenize(manager, tokenizer, path, **options):
    data = prepare(manager, {"format": "alpaca", "train": str(path), "eval": 0.25})
    return tokenize_cached(tokenizer, data.train, data.eval, **{"max_length": 128, **options})


def test_second_preparation_reuses_and_any_change_rebuilds(tmp_path, home, plugin_manager, tiny_tokenizer):
    path = _write(tmp_path / "a.jsonl", [f"word{i}" for i in range(8)])
    first = _tokenize(plugin_manager, tiny_tokenizer, path)
    assert not first.hit and first.path is not None
    assert first.path.parent == home / "data" == data_cache_root()
    second = _tokenize(plugin_manager, tiny_tokenizer, path)
    assert second.hit and second.key == first.key
    assert [t.input_ids for t in second.train] == [t.input_ids for t in first.train]
    assert [t.labels for t in second.eval] == [t.labels for t in first.eval]

    keys = {first.key}

    def rebuilt(result) -> None:
        assert not result.hit and result.key not in keys
        keys.add(result.key)

    _write(path, [f"word{i}" for i in range(7)] + ["changed"])  # the file's contents
    rebuilt(_tokenize(plugin_manager, tiny_tokenizer, path))
    rebuilt(_tokenize(plugin_manager, tiny_tokenizer, path, max_length=64))  # the options
    rebuilt(_tokenize(plugin_manager, tiny_tokenizer, path, train_on="all"))
    zephyr = apply_chat_template_choice(tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path), "zephyr")
    rebuilt(_tokenize(plugin_manager, zephyr, path))  # the template
    grown = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    grown.add_tokens(["word1"])  # the tokenizer: same template, different ids
    rebuilt(_tokenize(plugin_manager, grown, path))
    # and each of them is now reused
    assert _tokenize(plugin_manager, zephyr, path).hit


def test_a_damaged_entry_is_rebuilt(tmp_path, home, plugin_manager, tiny_tokenizer):
    path = _write(tmp_path / "a.jsonl", [f"w{i}" for i in range(8)])
    first = _tokenize(plugin_manager, tiny_tokenizer, path)
    (first.path / "train.ids").write_bytes(b"\x00\x01")
    again = _tokenize(plugin_manager, tiny_tokenizer, path)
    assert not again.hit
    assert [t.input_ids for t in again.train] == [t.input_ids for t in first.train]
    assert _tokenize(plugin_manager, tiny_tokenizer, path).hit


def test_seeded_split_and_separate_eval_file(tmp_path, plugin_manager):
    path = _write(tmp_path / "a.jsonl", [f"w{i}" for i in range(40)])
    table = {"format": "alpaca", "train": str(path), "eval": 0.25}

    def held(**extra) -> list[str]:
        return [ex.messages[-1]["content"] for ex in prepare(plugin_manager, {**table, **extra}, seed=42).eval]

    assert len(held()) == 10
    assert held() == held()
    assert held(seed=7) != held()
    assert held(seed=42) == held()  # data.seed defaults to [train] seed
    data = prepare(plugin_manager, {**table, "eval": 0.25}, seed=42)
    assert not {id(e) for e in data.train} & {id(e) for e in data.eval} and len(data.train) == 30
    other = _write(tmp_path / "b.jsonl", ["x", "y"])
    data = prepare(plugin_manager, {**table, "eval": str(other)})
    assert len(data.train) == 40 and [e.messages[-1]["content"] for e in data.eval] == ["x", "y"]


@pytest.mark.slow
def test_run_folder_keeps_the_training_template_and_cache(tmp_path, write_recipe, run_recipe, plugin_manager):
    """A base tokenizer with the llama3 built-in: model/ carries that template and its tokens."""
    from transformers import AutoConfig, AutoTokenizer

    path = _write(tmp_path / "a.jsonl", [f"w{i}" for i in range(10)])
    recipe = write_recipe({
        "model": {**tiny_model_recipe_table(), "chat_template": "llama3"},
        "data": {"format": "alpaca", "train": str(path), "eval": 0.2, "max_length": 64},
        "method": {"use": "full"},
        "objective": {"use": "sft"},
        "train": {"max_steps": 1, "batch_size": 4, "device": "cpu"},
        "evaluation": {"samples": 0, "forgetting": False},
        "output": {"dir": str(tmp_path / "run")},
    })
    metrics = run_recipe(recipe, output=tmp_path / "run")
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert saved.chat_template == BUILTINS["llama3"].jinja
    eot = saved.convert_tokens_to_ids("<|eot_id|>")
    assert eot is not None and eot != saved.unk_token_id
    assert AutoConfig.from_pretrained(tmp_path / "run" / "model").vocab_size >= len(saved)
    generation = json.loads((tmp_path / "run" / "model" / "generation_config.json").read_text())
    assert eot in generation["eos_token_id"]  # generation stops at the template's end-of-turn token
    assert metrics["data"]["train"] == 8
    # the run stored its tokenised data; the same data with the saved tokenizer finds it, so the
    # saved tokenizer (vocabulary, added tokens, template) is the one training used
    data = prepare(plugin_manager, {"format": "alpaca", "train": str(path), "eval": 0.2}, seed=42)
    assert tokenize_cached(saved, data.train, data.eval, max_length=64).hit


def test_key_ignores_padding_left_behind_by_generation(tmp_path, home, plugin_manager, tiny_tokenizer):
    """A batched, left-padded generation (evaluation before training) must not turn the next preparation into a miss."""
    path = _write(tmp_path / "a.jsonl", [f"word{i}" for i in range(8)])
    first = _tokenize(plugin_manager, tiny_tokenizer, path)
    side = tiny_tokenizer.padding_side
    tiny_tokenizer.padding_side = "left"
    try:
        tiny_tokenizer(["a b", "a b c d e"], padding=True)  # leaves padding enabled in the Rust tokenizer
    finally:
        tiny_tokenizer.padding_side = side
    again = _tokenize(plugin_manager, tiny_tokenizer, path)
    assert again.hit and again.key == first.key
