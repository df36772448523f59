"""Bad rows: counted by reason, strict mode names file and row, too many fail the run and write no results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftx.errors import DataError
from ftx.testing import tiny_model_recipe_table
from tests.test_data_formats import prepare

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
BROKEN_LINES = [
    json.dumps({"conversation": []}),                                                     # missing field
    json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}),  # empty
    json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}),    # order
    json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                             {"role": "user", "content": "c"}]}),                         # ends on a user turn
    "{not json",                                                                          # unreadable
]
REASONS = {"missing field": 1, "empty content": 1, "wrong role order": 1, "ends on a user turn": 1, "unreadable row": 1}


def write_broken(path: Path, good: int = 20) -> Path:
    lines = [json.dumps(GOOD)] * good
    for i, line in enumerate(BROKEN_LINES):
        lines.insert(3 + 4 * i, line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_each_bad_row_is_counted_by_reason(tmp_path, plugin_manager):
    path = write_broken(tmp_path / "chat.jsonl")
    data = prepare(plugin_manager, {"format": "messages", "train": str(path), "max_bad_fraction": 0.5})
    assert dict(data.report.dropped) == REASONS
    assert data.report.kept == 20
    assert data.report.first_bad["wrong role order"].startswith(f"{path}, row 12:")


def test_strict_mode_names_file_and_row(tmp_path, plugin_manager):
    path = write_broken(tmp_path / "chat.jsonl")
    with pytest.raises(DataError, match=rf"{path}, row 4: .*no 'messages' field.*strict"):
        prepare(plugin_manager, {"format": "messages", "train": str(path), "strict": True})


def test_threshold_fails_listing_reasons(tmp_path, plugin_manager):
    path = write_broken(tmp_path / "chat.jsonl")
    with pytest.raises(DataError) as info:
        prepare(plugin_manager, {"format": "messages", "train": str(path)})  # 5 of 25 bad > 5%
    message = str(info.value)
    assert "5 of 25 rows" in message and "max_bad_fraction = 0.05" in message
    assert all(reason in message for reason in REASONS)


def test_preference_and_classification_reasons(tmp_path, plugin_manager):
    pref = tmp_path / "pref.jsonl"
    pref.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": "r", "chosen": [{"role": "assistant", "content": "c"}], "rejected": "d"},
        {"prompt": "q", "chosen": "same", "rejected": "same"},
        {"prompt": "q", "chosen": "a"},
    ]) + "\n", encoding="utf-8")
    data = prepare(plugin_manager, {"format": "preference", "train": str(pref), "max_bad_fraction": 1.0, "eval": 0.5})
    assert dict(data.report.dropped) == {"chosen equals rejected": 1, "missing field": 1}
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\nfine,pos\nbad,neg\nodd,maybe\n", encoding="utf-8")
    data = prepare(plugin_manager, {"format": "classification", "train": str(labels), "labels": ["pos", "neg"],
                                    "max_bad_fraction": 1.0, "eval": 0.5})
    assert dict(data.report.dropped) == {"unknown label": 1}
    assert "labels.csv, row 4" in data.report.first_bad["unknown label"]


def _recipe(train: Path, out: Path, **data: object) -> dict:
    return {
        "model": tiny_model_recipe_table(),
        "data": {"format": "messages", "train": str(train), "eval": 0.2, **data},
        "method": {"use": "full"},
        "objective": {"use": "sft"},
        "train": {"max_steps": 1, "batch_size": 2, "device": "cpu"},
        "output": {"dir": str(out)},
    }


def _no_results(run_dir: Path) -> None:
    assert not (run_dir / "metrics.json").exists()
    assert not (run_dir / "model").exists()


def test_a_failing_run_writes_no_results(tmp_path, write_recipe, run_recipe):
    path = write_broken(tmp_path / "chat.jsonl")
    out = tmp_path / "run"
    with pytest.raises(DataError, match="max_bad_fraction"):
        run_recipe(write_recipe(_recipe(path, out)), output=out)
    _no_results(out)
    with pytest.raises(DataError, match=rf"{path}, row 4"):
        run_recipe(write_recipe(_recipe(path, out, strict=True)), output=out, overwrite=True)
    _no_results(out)


def test_over_length_drops_count_toward_the_threshold(tmp_path, plugin_manager, tiny_tokenizer, ftx_home):
    from ftx.data.cache import tokenize_prepared

    long = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "word " * 80}]}
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [GOOD] * 38 + [long] * 2) + "\n", encoding="utf-8")
    table = {"format": "messages", "train": str(path), "eval": 0.1, "max_length": 64, "overlength": "drop"}
    data = prepare(plugin_manager, table)
    with pytest.raises(DataError, match=r"(?s)2 of 40 rows .*over-length: 2 \(first: .*chat.jsonl, row \d+: \d+ tokens"):
        tokenize_prepared(data, tiny_tokenizer, {**table, "max_bad_fraction": 0.02}, "assistant")
    data = prepare(plugin_manager, table)
    result = tokenize_prepared(data, tiny_tokenizer, {**table, "max_bad_fraction": 0.1}, "assistant")
    assert result.dropped == {"over-length": 2}
    assert data.report.dropped["over-length"] == 2 and data.report.kept == 38


def test_preference_pairs_fit_max_length_together():
    from ftx.data.overlength import fit_pair

    prompt, chosen, rejected = list(range(100, 140)), list(range(10)), list(range(20, 50))
    assert fit_pair(prompt, chosen, rejected, 80) == (prompt, chosen, rejected)  # fits: unchanged
    p, c, r = fit_pair(prompt, chosen, rejected, 50)
    assert p == prompt[-20:] and c == chosen and r == rejected  # the prompt's start goes first, for both
    p, c, r = fit_pair(prompt, chosen, rejected, 30)
    assert len(p) == 8 and p == prompt[-8:]  # a minimal prompt is kept; then both answers are cut alike
    assert c == chosen and r == rejected[:22]
    assert max(len(p) + len(c), len(p) + len(r)) <= 30
    assert fit_pair(prompt, chosen, rejected, 50, "drop") is None  # the pair goes as a whole
    with pytest.raises(DataError, match=r"stack.json, row 3: the pair needs 70 tokens, over data.max_length = 50"):
        fit_pair(prompt, chosen, rejected, 50, "error", where="stack.json, row 3")
