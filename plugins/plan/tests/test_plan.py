"""``ftx plan``: parameter counts exact from a config, components asked for their memory (never named),
and the memory estimate within a stated margin of a real run."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ftx_plan
import pytest
from click.testing import CliRunner
from ftx.api import model_config, plugin_manager
from ftx.testing import tiny_recipe
from ftx_hookspecs import MemoryPlan, MethodSpec, ModelShape, Options, hookimpl
from ftx_plan.estimate import Inputs, Selection, estimate, plan_report
from ftx_plan.shape import shape_from_config

PEAK_MARGIN = 0.30
"""The plan's total may differ from the measured peak RSS of a run by at most this share of the peak."""
PLAN_SRC = Path(ftx_plan.__file__).parent


def _shape(folder: Path) -> ModelShape:
    return shape_from_config(json.loads((folder / "config.json").read_text()))


def _options(kind: str, name: str, **values: object) -> object:
    return plugin_manager().registry.get(kind, name).spec.options(**values)


def test_parameters_from_config_equal_the_built_model(tiny_model_path, tiny_model_factory):
    model = tiny_model_factory()
    shape = _shape(tiny_model_path)
    assert shape.total_params() == sum(p.numel() for p in model.parameters())
    assert dict(shape.named_parameters()) == {n: p.numel() for n, p in model.named_parameters()}


def test_full_state_is_four_times_the_weights_and_adapters_much_less(tiny_model_path):
    shape, inputs = _shape(tiny_model_path), Inputs()
    full = estimate(shape, inputs, Selection(("full", _options("method", "full"))))
    lora = estimate(shape, inputs, Selection(("lora", _options("method", "lora", r=4))))
    assert full.bytes["gradients"] == full.bytes["weights"] and full.bytes["optimizer"] == 2 * full.bytes["weights"]
    assert lora.bytes["optimizer"] < full.bytes["optimizer"] / 5
    qlora = estimate(shape, inputs, Selection(("qlora", _options("method", "qlora", r=4))))
    assert qlora.bytes["weights"] < lora.bytes["weights"] and qlora.plan.gradient_checkpointing
    frozen = estimate(shape, inputs, Selection(("full", _options("method", "full", freeze_layers=1))))
    per_layer = sum(n for name, n in shape.named_parameters() if name.startswith("model.layers.0."))
    assert full.plan.trainable_params - frozen.plan.trainable_params == per_layer + shape.vocab * shape.hidden


def test_a_preference_objective_adds_its_reference_only_when_it_keeps_one(tiny_model_path):
    shape, inputs = _shape(tiny_model_path), Inputs()
    full, lora = ("full", _options("method", "full")), ("lora", _options("method", "lora"))
    plain = estimate(shape, inputs, Selection(full, objective=("sft", _options("objective", "sft"))))
    dpo = estimate(shape, inputs, Selection(full, objective=("dpo", _options("objective", "dpo"))))
    assert dpo.bytes["reference"] == dpo.bytes["weights"] and "reference" not in plain.bytes
    assert dpo.bytes["activations"] > plain.bytes["activations"]  # chosen and rejected in one pass
    adapters = estimate(shape, inputs, Selection(lora, objective=("dpo", _options("objective", "dpo"))))
    precomputed = _options("objective", "dpo", precompute_ref_log_probs=True)
    assert "reference" not in adapters.bytes and "reference" not in estimate(shape, inputs, Selection(
        full, objective=("dpo", precomputed))).bytes
    rewards = [{"use": "exact-match"}]
    for beta, kept in ((0.0, False), (0.1, True)):
        rl = _options("objective", "rl", rewards=rewards, beta=beta)
        assert ("reference" in estimate(shape, inputs, Selection(full, objective=("rl", rl))).bytes) is kept
        assert "reference" not in estimate(shape, inputs, Selection(lora, objective=("rl", rl))).bytes


class TopLayersOptions(Options):
    """A third-party method that trains only the last ``layers`` blocks, and plans its memory."""

    layers: int = 1

    def memory_plan(self, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
        from dataclasses import replace

        trained = sum(n for name, n in shape.named_parameters()
                      if any(f".layers.{shape.layers - 1 - i}." in name for i in range(self.layers)))
        return replace(plan, trainable_params=trained, details=(*plan.details, f"top {self.layers}"))


class Outside:
    @hookimpl
    def ftx_register_methods(self, register: Callable[[MethodSpec], None]) -> None:
        register(MethodSpec("top-layers", "Train the top blocks.", "builtins:object", TopLayersOptions))
        register(MethodSpec("opaque", "A method that says nothing about memory.", "builtins:object"))


def test_plan_asks_any_method_through_its_options_and_notes_one_that_does_not_answer(write_recipe, tiny_dataset):
    manager = plugin_manager(extra_plugins=[Outside()])
    data = tiny_dataset("alpaca")
    top = manager.load_recipe(write_recipe(tiny_recipe(data, method={"use": "top-layers", "layers": 1}), name="a.toml"))
    report = plan_report(top, "cpu", 64 * 2**30, registry=manager.registry)
    shape = shape_from_config(model_config(top.model))
    per_layer = sum(n for name, n in shape.named_parameters() if f".layers.{shape.layers - 1}." in name)
    assert report["estimate"]["trainable_params"] == per_layer
    assert "top 1" in report["estimate"]["plan"]["details"]
    opaque = manager.load_recipe(write_recipe(tiny_recipe(data, method="opaque"), name="b.toml"))
    report = plan_report(opaque, "cpu", 2**20, registry=manager.registry)
    assert "method 'opaque' does not plan its memory: estimated as full fine-tuning" in report["notes"]
    assert report["estimate"]["trainable_params"] == report["estimate"]["total_params"]
    offered = [k["set"] for k in report["knobs"]]
    assert any(k.startswith('[method] use = "top-layers" (top 1') for k in offered), offered
    assert not any('"opaque"' in k for k in offered)


def test_the_plan_names_no_component():
    """Methods, kernels and objectives answer for themselves: the plugin's source names none of them."""
    registry = plugin_manager().registry
    names = {reg.spec.name for kind in ("method", "kernel", "objective") for reg in registry.all(kind)}
    names |= {"lora", "qlora", "dora", "full", "liger", "dpo", "kto"}
    for path in PLAN_SRC.glob("*.py"):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        strings = re.findall(r"[\"']([a-z][a-z0-9_-]*)[\"']", code)
        assert not names & set(strings), (path.name, names & set(strings))


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
    assert any(k["set"].startswith('[method] use = "lora" (adapters') for k in report["knobs"])
    usage = CliRunner().invoke(main, ["plan", "--help"])
    assert usage.exit_code == 0 and "Usage: ftx plan [OPTIONS] RECIPE" in usage.output and "--memory-gib" in usage.output
    bad = CliRunner().invoke(main, ["plan", str(path), "--set", "train.nope=1"])
    assert bad.exit_code == 2 and "train.nope: unknown key" in bad.output


@pytest.mark.slow
def test_estimate_is_within_margin_of_a_measured_peak(write_recipe, tmp_path, ftx_home):
    rng = random.Random(0)
    rows = [json.dumps({"text": " ".join(rng.choice("abcdefgh") for _ in range(400))}) for _ in range(60)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")  # every row longer than max_length
    path = write_recipe(_recipe_text(128, 16))
    recipe = plugin_manager().load_recipe(path)
    planned_mib = plan_report(recipe, "cpu")["estimate"]["total_bytes"] / 2**20
    env = {**os.environ, "FTX_HOME": str(ftx_home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "ftx.cli", "run", str(path), "-o", str(tmp_path / "run")],
                          check=False, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    measured_mib = json.loads((tmp_path / "run" / "metrics.json").read_text())["figures"]["peak_rss_mib"]
    assert abs(planned_mib - measured_mib) <= PEAK_MARGIN * measured_mib, (planned_mib, measured_mib)
