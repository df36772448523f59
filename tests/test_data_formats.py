"""Real public files (../shared/data) load, validate and tokenise through the format plugins."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ftx_hookspecs import ChatExample, ClassificationExample, PreferenceExample, TextExample

from ftx.data.cache import tokenize_cached
from ftx.data.overlength import fit_pair
from ftx.data.prepare import PreparedData, prepare_examples
from ftx.data.tokenize import IGNORE_INDEX
from ftx.recipe.schema import DataSection


def prepare(manager: Any, table: dict[str, Any], seed: int = 0) -> PreparedData:
    """What the runner does for ``[data]``: split core keys from format options, build, prepare."""
    core = {k: v for k, v in table.items() if k in DataSection.model_fields}
    rest = {k: v for k, v in table.items() if k not in DataSection.model_fields}
    found = manager.registry.get("data format", core["format"])
    fmt = found.spec.build(found.spec.options(**rest))
    return prepare_examples(DataSection(**core), fmt, seed)


def _trained_text(tokenizer, tok) -> str:
    return tokenizer.decode([i for i, lab in zip(tok.input_ids, tok.labels) if lab != IGNORE_INDEX])


def test_alpaca_tiny(shared_data, plugin_manager, tiny_tokenizer):
    data = prepare(plugin_manager, {"format": "alpaca", "train": str(shared_data / "alpaca_tiny.json"), "eval": 0.1})
    assert (len(data.train), len(data.eval)) == (90, 10)
    assert not data.report.dropped
    first = data.train[0]
    assert isinstance(first, ChatExample)
    assert first.messages[0] == {"role": "user", "content": "Give three tips for staying healthy."}
    tokens = tokenize_cached(tiny_tokenizer, data.train, data.eval, max_length=2048, use_cache=False)
    assert len(tokens.train) == 90 and not tokens.dropped
    for example, tok in zip(data.train, tokens.train):
        # exactly the answer and its end-of-turn token train
        assert _trained_text(tiny_tokenizer, tok) == example.messages[-1]["content"] + "<|im_end|>"


def test_fastchat_sharegpt(shared_data, plugin_manager, tiny_tokenizer):
    data = prepare(plugin_manager, {"format": "sharegpt", "train": str(shared_data / "fastchat_dummy_conversation.json"),
                                    "eval": 0.02})
    assert data.report.kept == 500 and not data.report.dropped
    turns = Counter(len(ex.messages) for ex in data.train)
    assert max(turns) > 2  # multi-turn conversations are kept whole
    multi = next(ex for ex in data.train if len(ex.messages) >= 4)
    tok = tokenize_cached(tiny_tokenizer, [multi], [], max_length=4096, use_cache=False).train[0]
    answers = [m["content"] + "<|im_end|>" for m in multi.messages if m["role"] == "assistant"]
    assert _trained_text(tiny_tokenizer, tok) == "".join(answers)
    tokens = tokenize_cached(tiny_tokenizer, data.train[:60], data.eval, max_length=512, use_cache=False)
    assert len(tokens.train) == 60 and all(t.trained for t in tokens.train)


def test_stack_exchange_preference_through_columns(shared_data, plugin_manager, tiny_tokenizer):
    columns = {"prompt": "question", "chosen": "response_j", "rejected": "response_k"}
    path = shared_data / "stack_exchange_paired_tiny.json"
    data = prepare(plugin_manager, {"format": "preference", "train": str(path), "eval": 0.2, "columns": columns})
    assert data.report.kept == 25 and not data.report.dropped
    assert all(isinstance(ex, PreferenceExample) for ex in data.train + data.eval)
    import json

    raw = json.loads(path.read_text())
    for ex in data.train:
        row = raw[int(ex.meta["source"].rsplit(":", 1)[1]) - 1]  # meta names file and 1-based record
        assert ex.prompt == [{"role": "user", "content": row["question"]}]
        assert (ex.chosen, ex.rejected) == (row["response_j"], row["response_k"])
    # long pairs fit max_length the same way for both answers
    ex = data.train[0]
    ids = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in (ex.prompt[0]["content"], ex.chosen, ex.rejected)]
    prompt, chosen, rejected = fit_pair(*ids, max_length=256)
    assert len(prompt) + len(chosen) <= 256 and len(prompt) + len(rejected) <= 256
    assert prompt == ids[0][len(ids[0]) - len(prompt):]


def test_tinyshakespeare_text(shared_data, plugin_manager, tiny_tokenizer):
    data = prepare(plugin_manager, {"format": "text", "train": str(shared_data / "tinyshakespeare_input.txt"), "eval": 0.05})
    assert len(data.train) + len(data.eval) > 5000  # one .txt row, split into speeches at blank lines
    assert all(isinstance(ex, TextExample) for ex in data.train[:10])
    assert data.train[0].text.startswith("First Citizen:")
    tokens = tokenize_cached(tiny_tokenizer, data.train[:200], [], max_length=256, use_cache=False)
    assert all(t.labels == t.input_ids for t in tokens.train)


def test_sms_spam_classification(shared_data, plugin_manager):
    header = (shared_data / "SMSSpamCollection.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split("\t") == ["Label", "SMS"]
    data = prepare(plugin_manager, {"format": "classification", "train": str(shared_data / "SMSSpamCollection.tsv"),
                                    "columns": {"text": "SMS", "label": "Label"}, "labels": ["ham", "spam"]})
    examples = data.train + data.eval
    assert all(isinstance(ex, ClassificationExample) for ex in examples)
    labels = Counter(ex.label for ex in examples)
    assert set(labels) == {"ham", "spam"} and labels["ham"] > 4 * labels["spam"] > 0
    assert data.report.total == 5574
    assert sum(data.report.dropped.values()) / 5574 <= 0.05


def test_conversation_formats_without_real_files(tmp_path, plugin_manager):
    import json

    sharegpt = tmp_path / "s.jsonl"
    sharegpt.write_text("\n".join(json.dumps(r) for r in [
        {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}]},
        {"conversations": [{"from": "user", "value": "u"}, {"from": "bot", "value": "a"}]},
        {"conversations": [{"from": "narrator", "value": "u"}, {"from": "gpt", "value": "a"}]},
    ]) + "\n", encoding="utf-8")
    data = prepare(plugin_manager, {"format": "sharegpt", "train": str(sharegpt), "eval": 0.4, "max_bad_fraction": 0.5,
                                    "system": "Default."})
    examples = data.train + data.eval
    assert [m["role"] for m in examples[0].messages] in (["system", "user", "assistant"],)
    assert {ex.messages[0]["content"] for ex in examples} == {"S", "Default."}
    assert dict(data.report.dropped) == {"unknown role": 1}
    data = prepare(plugin_manager, {"format": "sharegpt", "train": str(sharegpt), "eval": 0.4,
                                    "roles": {"narrator": "user"}})
    assert data.report.kept == 3 and not data.report.dropped


def test_hh_rlhf_transcripts_split_at_the_shared_prompt(tmp_path, plugin_manager):
    import json

    prompt = "\n\nHuman: What is 2+2?\n\nAssistant:"
    path = tmp_path / "hh.jsonl"
    rows = [{"chosen": prompt + " It is 4.", "rejected": prompt + " It is 5."},
            {"chosen": prompt + " Four.", "rejected": prompt + " No idea."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    data = prepare(plugin_manager, {"format": "preference", "train": str(path), "eval": 0.5})
    pairs = {(ex.chosen, ex.rejected) for ex in data.train + data.eval}
    assert pairs == {("It is 4.", "It is 5."), ("Four.", "No idea.")}
    assert all(ex.prompt[0]["content"].endswith("Assistant:") for ex in data.train + data.eval)
