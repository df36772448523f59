"""``ftx plan``: parameter counts exact from a config, memory estimate within a stated margin of a real run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ftx.plan import Setup, estimate, shape_from_config

PEAK_MARGIN = 0.30
"""The plan's total may differ from the measured peak RSS of a run by at most this share of the peak."""


def _shape(folder: Path):
    return shape_from_config(json.loads((folder / "config.json").read_text()))


def test_parameters_from_config_equal_the_built_model(tiny_model_path, tiny_model_factory):
    model = tiny_model_factory()
    assert _shape(tiny_model_path).total_params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("targets", [("all-linear",), ("q_proj", "v_proj"), (r".*\.mlp\..*_proj",)])
def test_lora_trainable_parameters_equal_peft(tiny_model_path, tiny_model_factory, targets):
    from types import SimpleNamespace

    from ftx_lora import LoraOptions
    from ftx_lora.method import LoraMethod

    target_modules = list(targets) if len(targets) > 1 or targets[0] in ("q_proj",) else targets[0]
    ctx = SimpleNamespace(train=SimpleNamespace(gradient_checkpointing=False))
    model = LoraMethod(LoraOptions(r=8, target_modules=target_modules)).apply(tiny_model_factory(), ctx)
    measured = sum(p.numel() for p in model.parameters() if p.requires_grad)
    planned = estimate(_shape(tiny_model_path), Setup(method="lora", r=8, targets=targets)).trainable_params
    assert planned == measured


def test_full_state_is_four_times_the_weights_and_lora_much_less(tiny_model_path):
    shape = _shape(tiny_model_path)
    full = estimate(shape, Setup())
    lora = estimate(shape, Setup(method="lora", r=4))
    assert full.bytes["gradients"] == full.bytes["weights"] and full.bytes["optimizer"] == 2 * full.bytes["weights"]
    assert lora.bytes["optimizer"] < full.bytes["optimizer"] / 5
    qlora = estimate(shape, Setup(method="lora", r=4, quant_bits=4))
    assert qlora.bytes["weights"] < lora.bytes["weights"]


def _recipe_text(max_length: int, batch_size: int) -> str:
    return f"""
[model]
name = "builtin:small-llama"
[data]
format = "text"
train = "train.jsonl"
eval = 0.05
max_length = {max_length}
[method]
use = "full"
[objective]
use = "text"
[train]
max_steps = 3
batch_size = {batch_size}
log_every = 1
[evaluation]
forgetting = false
samples = 0
"""


def test_plan_command_says_what_would_make_it_fit(write_recipe, tmp_path):
    from ftx.cli import main

    (tmp_path / "train.jsonl").write_text('{"text": "a b c"}\n' * 40, encoding="utf-8")
    path = write_recipe(_recipe_text(512, 16))
    result = CliRunner().invoke(main, ["plan", str(path), "--device", "cpu", "--memory-gib", "0.9"])
    assert result.exit_code == 0, result.output
    assert "does NOT fit" in result.output
    assert "knobs that would make it fit" in result.output and "(fits)" in result.output
    roomy = CliRunner().invoke(main, ["plan", str(path), "--device", "cpu", "--memory-gib", "64", "--json"])
    report = json.loads(roomy.output)
    assert report["fits"] is True and report["estimate"]["trainable_params"] == report["estimate"]["total_params"]


@pytest.mark.slow
def test_estimate_is_within_margin_of_a_measured_peak(write_recipe, tmp_path, ftx_home):
    from ftx.plan import plan_report
    from ftx.plugins import make_plugin_manager
    from ftx.recipe import load_recipe

    rng = random.Random(0)
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as handle:
        for _ in range(60):  # every example is longer than max_length, so batches are full
            handle.write(json.dumps({"text": " ".join(rng.choice("abcdefgh") for _ in range(400))}) + "\n")
    path = write_recipe(_recipe_text(128, 16))
    recipe = load_recipe(path, make_plugin_manager().registry)
    planned_mib = plan_report(recipe, "cpu")["estimate"]["total_bytes"] / 2**20
    env = {**os.environ, "FTX_HOME": str(ftx_home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "ftx.cli", "run", str(path), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    measured_mib = json.loads((tmp_path / "run" / "metrics.json").read_text())["figures"]["peak_rss_mib"]
    assert abs(planned_mib - measured_mib) <= PEAK_MARGIN * measured_mib, (planned_mib, measured_mib)
