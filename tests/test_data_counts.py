"""The example counts a run reports are those it trained on: rows dropped at tokenisation are not counted."""

from __future__ import annotations

import json

from ftx.testing import tiny_recipe


def test_metrics_count_the_examples_left_after_tokenisation_drops(tmp_path, write_recipe, run_recipe):
    rows = [{"instruction": f"say {i}", "input": "", "output": "ok"} for i in range(30)]
    rows += [{"instruction": "long " * 200, "input": "", "output": "too long to fit"} for _ in range(3)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = write_recipe(tiny_recipe(data, steps=1, data={"eval": 0.1, "max_length": 32, "overlength": "drop",
                                                           "max_bad_fraction": 0.2, "cache": False}))
    metrics = run_recipe(recipe)
    counts = metrics["data"]
    assert counts["dropped"] == {"over-length": 3}
    assert counts["train"] == metrics["train"]["examples"]  # what trained, not what was read
    assert counts["train"] + counts["eval"] == 30
