"""``[train] compile = true`` runs the model through torch.compile and trains to the same losses."""

from __future__ import annotations

import json

import pytest

from ftx.testing import tiny_recipe


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "logs.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.mark.slow
@pytest.mark.long  # a cold inductor cache compiles C++ for minutes on 2 cores
def test_compiled_training_compiles_and_matches_eager(tiny_dataset, write_recipe, run_recipe, tmp_path):
    import torch._dynamo

    data = tiny_dataset("alpaca", count=24)
    recipe = write_recipe(tiny_recipe(data, steps=4))
    run_recipe(recipe, output=tmp_path / "eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    run_recipe(recipe, ["train.compile=true"], output=tmp_path / "compiled")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the model really went through dynamo
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), rel=1e-4, abs=1e-4)
