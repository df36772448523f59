"""The liger kernel plugin on a CPU machine: options validate, and every way it cannot run says why.

Liger's Triton kernels need CUDA, so its patching is checked against a stand-in for
``liger_kernel.transformers.monkey_patch`` that records what it was asked to do; bench/gpu.sh
measures the real kernels when a GPU is at hand.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import ftx_liger
import pytest
from ftx.errors import RecipeError, RunError
from ftx.plugins import make_plugin_manager
from ftx.testing import tiny_recipe


@pytest.fixture
def fake_liger(monkeypatch):
    """A stand-in liger-kernel that covers llama and records each patching."""
    calls: list[dict] = []
    patches = types.ModuleType("liger_kernel.transformers.monkey_patch")

    def apply_to_llama(**kwargs):
        calls.append(kwargs)

    def apply_to_instance(model, **kwargs):
        patches.MODEL_TYPE_TO_APPLY_LIGER_FN[model.config.model_type](model=model, **kwargs)

    patches.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": apply_to_llama, "qwen2": apply_to_llama}
    patches._apply_liger_kernel_to_instance = apply_to_instance
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", patches)
    return calls


def _manager():
    return make_plugin_manager(extra_plugins=[ftx_liger])


def test_recipe_options_validate_and_a_misspelt_key_is_named(write_recipe, tiny_dataset):
    data = tiny_dataset("alpaca")
    good = write_recipe(tiny_recipe(data, kernels=[{"use": "liger", "rope": False}]))
    recipe = _manager().load_recipe(good)
    assert [(k.name, k.options.rope, k.options.rms_norm) for k in recipe.kernels] == [("liger", False, True)]
    assert recipe.to_dict()["kernels"][0]["use"] == "liger"

    bad = write_recipe(tiny_recipe(data, kernels=[{"use": "liger", "rms_nrom": False}]), name="bad.toml")
    with pytest.raises(RecipeError) as err:
        _manager().load_recipe(bad)
    assert "kernels[0].rms_nrom" in str(err.value) and "rms_norm" in str(err.value)


def test_missing_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # import now raises ImportError
    from ftx_liger.kernel import LigerKernel

    with pytest.raises(RunError, match="pip install liger-kernel"):
        LigerKernel(ftx_liger.LigerOptions())


def test_without_cuda_the_run_fails_before_any_work(fake_liger, run_recipe, write_recipe, tiny_dataset, tmp_path):
    recipe = write_recipe(tiny_recipe(tiny_dataset("alpaca"), kernels=[{"use": "liger"}]))
    out = tmp_path / "run"
    manager = _manager()
    from ftx.runner import run_recipe as run

    with pytest.raises(RunError, match="only on a CUDA GPU"):
        run(manager.load_recipe(recipe), manager, output=out, echo=lambda _m: None)
    assert not (out / "model").exists() and not (out / "metrics.json").exists()
    assert fake_liger == []


def test_patches_the_base_model_with_the_recipes_choice(fake_liger, monkeypatch, tiny_model_factory):
    import torch
    from ftx_liger.kernel import LigerKernel

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    kernel = LigerKernel(ftx_liger.LigerOptions(swiglu=False, cross_entropy=True))
    model = tiny_model_factory()
    wrapped = SimpleNamespace(get_base_model=lambda: model)  # as peft wraps a model

    assert kernel.apply(wrapped, SimpleNamespace(device="cuda")) is wrapped
    assert fake_liger == [{"model": model, "rms_norm": True, "rope": True, "swiglu": False,
                           "fused_linear_cross_entropy": True, "cross_entropy": False}]

    model.config.model_type = "gpt_neox"
    with pytest.raises(RunError, match="no kernels for model type 'gpt_neox'.*llama, qwen2"):
        kernel.apply(model, SimpleNamespace(device="cuda"))
    with pytest.raises(RunError, match="this run is on cpu"):
        kernel.apply(model, SimpleNamespace(device="cpu"))


def test_not_installed_names_its_distribution_without_guessing(write_recipe, tiny_dataset):
    recipe = write_recipe(tiny_recipe(tiny_dataset("alpaca"), kernels=[{"use": "liger"}]))
    with pytest.raises(RecipeError) as err:
        make_plugin_manager(load_entry_points=False).load_recipe(recipe)
    message = str(err.value)
    assert "kernels[0].use: kernel 'liger' is not installed" in message
    assert "pip install ftx-liger" in message and "Did you mean" not in message.split("kernels[0].use")[1]


def test_fused_loss_drops_the_logits_from_ftx_plan(write_recipe, tiny_dataset):
    """``ftx plan`` knows that Liger's fused linear cross-entropy never holds the logits; with it off, it does."""
    from ftx_plan.estimate import plan_report

    data = tiny_dataset("alpaca")
    manager = _manager()

    def plan(kernels: list[dict]) -> dict:
        recipe = tiny_recipe(data, train={"batch_size": 16}, data={"max_length": 512}, kernels=kernels)
        path = write_recipe(recipe, name=f"r{len(kernels)}{kernels and len(kernels[0])}.toml")
        return plan_report(manager.load_recipe(path), "cuda", 80 * 2**30, registry=manager.registry)

    plain, fused = plan([]), plan([{"use": "liger"}])
    unfused = plan([{"use": "liger", "fused_linear_cross_entropy": False}])
    vocab = plain["shape"]["vocab"]
    logits = 16 * 512 * vocab * 3 * 4  # tokens x vocabulary x (logits, float32 copy, gradient) x 4 bytes
    assert plain["estimate"]["bytes"]["activations"] - fused["estimate"]["bytes"]["activations"] == logits
    assert unfused["estimate"] == plain["estimate"]
    assert any("logits are never held" in note for note in fused["notes"])
