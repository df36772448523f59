"""``[train] precision``: bf16 autocast of the training matmuls (about 2x on CPUs with bf16 units), weights kept
in ``model.dtype``; ``auto`` stays fp32 on a CPU; fp16 on a CPU is a recipe error naming the key."""

from __future__ import annotations

import json

import pytest
from ftx.errors import RecipeError
from ftx.testing import tiny_recipe
from ftx.training import mixed_precision


@pytest.mark.parametrize(("choice", "device", "expected"), [
    ("auto", "cpu", {}),
    ("fp32", "cpu", {"bf16": False, "fp16": False}),
    ("bf16", "cpu", {"bf16": True}),
])
def test_precision_maps_to_trainer_arguments(choice, device, expected):
    assert mixed_precision(choice, "auto", device) == expected


def test_fp16_on_a_cpu_is_refused_naming_the_key():
    with pytest.raises(RecipeError, match=r"train\.precision: 'fp16' needs a CUDA GPU"):
        mixed_precision("fp16", "auto", "cpu")


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "logs.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.mark.slow
def test_bf16_trains_under_autocast_and_keeps_fp32_weights(tiny_dataset, write_recipe, run_recipe, tmp_path):
    from safetensors.torch import load_file

    recipe = write_recipe(tiny_recipe(tiny_dataset("alpaca", count=24), steps=6))
    run_recipe(recipe, ["train.log_every=1"], output=tmp_path / "fp32")
    run_recipe(recipe, ["train.log_every=1", "train.precision=bf16"], output=tmp_path / "bf16")
    fp32, bf16 = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert bf16[-1] < bf16[0]  # it trains
    assert bf16[0] == pytest.approx(fp32[0], rel=0.02)  # the same model and batch ...
    assert bf16[0] != fp32[0]  # ... computed in bf16: autocast was on
    weights = load_file(next((tmp_path / "bf16" / "model").glob("*.safetensors")))
    assert {str(t.dtype) for t in weights.values()} == {"torch.float32"}
