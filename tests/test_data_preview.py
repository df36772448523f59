"""``ftx data preview``: trained tokens marked (colour or [[...]]), statistics, dropped rows by reason."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from ftx.cli import main
from ftx.testing import tiny_model_recipe_table

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _recipe(write_recipe, train, **data):
    return write_recipe({
        "model": tiny_model_recipe_table(),
        "data": {"format": "alpaca", "train": str(train), "eval": 0.2, "max_length": 48, **data},
        "method": {"use": "full"},
        "objective": {"use": "sft"},
    })


def _rows(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_preview_marks_exactly_the_answers_and_prints_statistics(tmp_path, write_recipe, tiny_model_path):
    rows = [{"instruction": "Say it.", "input": f"item {i}", "output": f"answer {i}"} for i in range(10)]
    rows.append({"instruction": "Say it.", "input": "", "output": ""})  # dropped: empty content
    recipe = _recipe(write_recipe, _rows(tmp_path / "d.jsonl", rows), max_bad_fraction=0.5)
    result = CliRunner().invoke(main, ["data", "preview", str(recipe), "-n", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "\x1b[" not in out  # not a terminal: markers, no colour
    samples, _, stats = out.partition("--- trained tokens are shown [[...]]")
    assert stats
    marked = re.findall(r"\[\[(.*?)\]\]", samples, flags=re.S)
    assert len(marked) == 2
    assert all(re.fullmatch(r"answer \d<\|im_end\|>", m) for m in marked), marked
    assert out.count("--- sample") == 2
    assert "<|im_start|>user" in out and "[[<|im_start|>" not in out  # the prompt is shown, unmarked
    assert re.search(r"tokens per example: min \d+, mean [\d.]+, max \d+", out)
    assert re.search(r"trained tokens: \d+ of \d+ \(\d+\.\d%\)", out)
    assert "examples: 8 train, 2 eval" in out
    assert "dropped: empty content: 1" in out
    assert "a run would stop here" not in out


def test_preview_in_colour_and_over_the_threshold(tmp_path, write_recipe, tiny_model_path):
    rows = [{"instruction": "Say it.", "input": "", "output": f"answer {i}"} for i in range(8)]
    rows += [{"instruction": "Say it."}, {"output": "x"}]
    recipe = _recipe(write_recipe, _rows(tmp_path / "d.jsonl", rows))
    result = CliRunner().invoke(main, ["data", "preview", str(recipe), "-n", "1", "--color"])
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.output and "[[" not in result.output
    assert "answer" in ANSI.sub("", result.output)
    assert "dropped: missing field: 2" in result.output
    assert "a run would stop here" in result.output  # 2 of 10 > 5%


def test_preview_of_a_missing_file_is_a_clear_error(tmp_path, write_recipe):
    recipe = _recipe(write_recipe, tmp_path / "nope.jsonl")
    result = CliRunner().invoke(main, ["data", "preview", str(recipe)])
    assert result.exit_code != 0
    assert "nope.jsonl" in result.output
