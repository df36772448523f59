"""``memory_plan`` of the lora, dora and qlora options (for ``ftx plan``): adapter counts equal peft's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ftx_hookspecs import MemoryPlan, MemoryPlanner, ModelShape
from ftx_lora import DoraOptions, LoraOptions, QLoraOptions


def _shape(folder) -> ModelShape:
    """The tiny Llama's shape, read here so these tests need no other plugin."""
    c = json.loads((folder / "config.json").read_text())
    heads = c["num_attention_heads"]
    return ModelShape(model_type="llama", vocab=c["vocab_size"], hidden=c["hidden_size"],
                      intermediate=c["intermediate_size"], layers=c["num_hidden_layers"], heads=heads,
                      kv_heads=c.get("num_key_value_heads") or heads,
                      head_dim=c.get("head_dim") or c["hidden_size"] // heads,
                      tied=c.get("tie_word_embeddings", True), gated=True)


def _base(shape, device: str = "cpu") -> MemoryPlan:
    total = shape.total_params()
    return MemoryPlan(device=device, dtype="float32", batch_size=8, max_length=128, gradient_checkpointing=False,
                      optimizer="adamw_torch", total_params=total, trainable_params=total, weight_bytes=4 * total,
                      trainable_bytes=4)


@pytest.mark.parametrize("targets", [["all-linear"], ["q_proj", "v_proj"], [r".*\.mlp\..*_proj"]])
@pytest.mark.parametrize("options_class", [LoraOptions, DoraOptions])
def test_adapter_parameters_equal_peft(tiny_model_path, tiny_model_factory, targets, options_class):
    from ftx_lora.method import LoraMethod

    options = options_class(r=8, target_modules=targets if len(targets) > 1 else targets[0])
    assert isinstance(options, MemoryPlanner)
    ctx = SimpleNamespace(train=SimpleNamespace(gradient_checkpointing=False))
    model = LoraMethod(options).apply(tiny_model_factory(), ctx)
    measured = sum(p.numel() for p in model.parameters() if p.requires_grad)
    shape = _shape(tiny_model_path)
    plan = options.memory_plan(shape, _base(shape))
    assert plan.trainable_params == measured and plan.adapters and plan.trainable_bytes == 4
    assert plan.total_params == shape.total_params() + measured


def test_qlora_stores_the_base_in_four_bits_and_turns_checkpointing_on(tiny_model_path):
    shape = _shape(tiny_model_path)
    lora = LoraOptions(r=4).memory_plan(shape, _base(shape))
    qlora = QLoraOptions(r=4).memory_plan(shape, _base(shape, "cuda"))
    assert qlora.trainable_params == lora.trainable_params
    assert qlora.weight_bytes < lora.weight_bytes and qlora.gradient_checkpointing and qlora.dtype == "bfloat16"
    assert "4-bit base" in qlora.details
    single = QLoraOptions(r=4, double_quant=False).memory_plan(shape, _base(shape))
    assert single.weight_bytes > QLoraOptions(r=4).memory_plan(shape, _base(shape)).weight_bytes
