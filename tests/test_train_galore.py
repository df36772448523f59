"""GaLore through transformers' optimizer options: ``[train] optimizer = "galore_adamw"`` with its target modules
and settings as recipe keys; a missing galore-torch is named when the recipe is read."""

from __future__ import annotations

import importlib.util
import json

import pytest
from ftx.errors import RecipeError
from ftx.plugins import make_plugin_manager
from ftx.testing import TINY_TEST_CONFIG


def _tables(train: dict) -> dict:
    return {
        "model": {"name": "builtin:tiny-llama", "config": dict(TINY_TEST_CONFIG)},
        "data": {"format": "alpaca", "train": "copy.jsonl", "eval": 0.2},
        "method": {"use": "full"},
        "objective": {"use": "sft"},
        "train": {"max_steps": 3, "batch_size": 8, "lr": 1e-3, "log_every": 1, "threads": 1, **train},
        "evaluators": [{"use": "loss"}],
        "evaluation": {"forgetting": False, "samples": 0},
    }


@pytest.fixture
def copy_rows(tmp_path):
    rows = [{"instruction": "Copy.", "input": f"{c} {d}", "output": f"{c} {d}"} for c in "abcd" for d in "abcdefghij"]
    (tmp_path / "copy.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_a_missing_galore_package_is_named_when_the_recipe_is_read(write_recipe, copy_rows, ftx_home, monkeypatch):
    manager = make_plugin_manager()
    path = write_recipe(_tables({"optimizer": "galore_adamw"}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "galore_torch" else real(name, *a))
    with pytest.raises(RecipeError, match=r"train.*optimizer 'galore_adamw' needs the galore-torch package, "
                                          r"which is not installed: pip install galore-torch"):
        manager.load_recipe(path)
    monkeypatch.undo()
    with pytest.raises(RecipeError, match=r"optimizer_target_modules applies to GaLore/APOLLO optimizers only"):
        manager.load_recipe(write_recipe(_tables({"optimizer_target_modules": ["q_proj"]}), "plain.toml"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("galore_torch") is None, reason="galore-torch is not installed")
def test_galore_trains_a_few_steps_with_its_projected_layers(write_recipe, copy_rows, run_recipe, monkeypatch, tmp_path):
    import ftx.trainer

    seen = []
    guard = ftx.trainer.guard_optimizer
    monkeypatch.setattr(ftx.trainer, "guard_optimizer", lambda opt, *a: seen.append(opt) or guard(opt, *a))
    path = write_recipe(_tables({"optimizer": "galore_adamw", "optimizer_target_modules": ["q_proj", "v_proj", "up_proj"],
                                 "optimizer_args": {"rank": 4, "update_proj_gap": 2, "scale": 0.25}}))
    metrics = run_recipe(path, output=tmp_path / "run")
    assert metrics["train"]["steps"] == 3.0
    assert metrics["after"]["loss"]["loss"] < metrics["before"]["loss"]["loss"]
    (optimizer,) = seen
    assert type(optimizer).__module__.startswith("galore_torch")  # GaLoreAdamW (its class is named AdamW)
    projected = [g for g in optimizer.param_groups if "rank" in g]
    assert len(projected) == 1 and projected[0]["rank"] == 4 and projected[0]["update_proj_gap"] == 2
    layers = TINY_TEST_CONFIG.get("num_hidden_layers", 2)
    assert len(projected[0]["params"]) == 3 * layers
