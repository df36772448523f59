"""``[distributed]`` without starting any process: what ``ftx validate`` accepts and refuses, the DeepSpeed
config ftx writes, the FSDP settings transformers receives, and the meta-device copy the trained shards
are gathered into. (The 2-process FSDP runs themselves are in tests/test_core_fsdp.py.)"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from click.testing import CliRunner
from ftx.testing import recipe_text, tiny_model_recipe_table

BASE = {
    "model": tiny_model_recipe_table(),
    "data": {"format": "alpaca", "train": "data.jsonl"},
    "method": {"use": "full"},
    "objective": {"use": "sft"},
}


def _validate(tmp_path, distributed: dict, train: dict | None = None):
    from ftx.cli import main

    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    tables = {**BASE, "distributed": distributed}
    if train:
        tables["train"] = train
    (tmp_path / "r.toml").write_text(recipe_text(tables), encoding="utf-8")
    return CliRunner().invoke(main, ["validate", str(tmp_path / "r.toml")])


@pytest.fixture
def deepspeed_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))


@pytest.fixture
def deepspeed_present(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "deepspeed" else real(name, *a))


def test_validate_refuses_deepspeed_where_it_is_not_installed_and_says_what_to_install(tmp_path, deepspeed_missing):
    result = _validate(tmp_path, {"strategy": "deepspeed", "zero_stage": 3})
    assert result.exit_code == 2, result.output
    assert "distributed.strategy" in result.output and "pip install deepspeed" in result.output


def test_validate_of_deepspeed_imports_neither_torch_nor_deepspeed(tmp_path):
    import subprocess

    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    (tmp_path / "r.toml").write_text(recipe_text({**BASE, "distributed": {"strategy": "deepspeed"}}), encoding="utf-8")
    code = ("import sys; from ftx.cli import main\n"
            "try:\n    main(['validate', sys.argv[1]])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.toml")], capture_output=True, text=True,
                         timeout=120, check=False)
    installed = importlib.util.find_spec("deepspeed") is not None
    assert out.stdout.strip().splitlines()[-1] == f"NO-TORCH {0 if installed else 2}", out.stdout + out.stderr


@pytest.mark.parametrize(("distributed", "words"), [
    ({"strategy": "ddp", "zero_stage": 2}, "zero_stage apply to strategy = 'deepspeed' only"),
    ({"strategy": "deepspeed", "cpu_offload": True}, "cpu_offload apply to strategy = 'fsdp' only"),
    ({"strategy": "fsdp", "offload_optimizer": True}, "offload_optimizer apply to strategy = 'deepspeed' only"),
    ({"strategy": "deepspeed", "zero_stage": 2, "offload_params": True}, "offload_params needs zero_stage = 3"),
    ({"strategy": "fsdp", "fsdp_version": 1}, "distributed.fsdp_version"),
    ({"strategy": "fsdp", "fsdp": "full_shard"}, "fsdp (transformers' option string) is gone"),
])
def test_validate_names_keys_that_do_not_fit_the_strategy(tmp_path, deepspeed_present, distributed, words):
    result = _validate(tmp_path, distributed)
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_deepspeed_needs_cuda_and_a_readable_config_file(tmp_path, deepspeed_present):
    result = _validate(tmp_path, {"strategy": "deepspeed"}, {"device": "cpu"})
    assert result.exit_code == 2 and "DeepSpeed trains on CUDA GPUs only" in result.output
    (tmp_path / "ds.json").write_text("{not json", encoding="utf-8")
    result = _validate(tmp_path, {"strategy": "deepspeed", "deepspeed": "ds.json"})
    assert result.exit_code == 2 and "distributed.deepspeed" in result.output and "not valid JSON" in result.output
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 2}}', encoding="utf-8")
    assert _validate(tmp_path, {"strategy": "deepspeed", "deepspeed": "ds.json"}).exit_code == 0
    result = _validate(tmp_path, {"strategy": "deepspeed", "deepspeed": "ds.json", "offload_optimizer": True})
    assert result.exit_code == 2 and "not both" in result.output


def test_a_resolved_recipe_spelling_every_default_validates_again():
    """recipe.lock.toml writes every key of [distributed]; the strategy checks judge values, not presence."""
    from ftx.recipe.schema import DistributedSection

    for strategy in ("ddp", "fsdp"):
        dumped = DistributedSection(strategy=strategy).model_dump(mode="json")
        assert DistributedSection.model_validate(dumped).strategy == strategy


def test_deepspeed_config_from_the_recipe_keys():
    from ftx.deepspeed_config import build_config
    from ftx.recipe.schema import DistributedSection

    three = build_config(DistributedSection.model_construct(
        **{**DistributedSection().model_dump(), "strategy": "deepspeed", "offload_params": True, "offload_optimizer": True}))
    zero = three["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True  # one model saved
    assert zero["offload_param"]["device"] == zero["offload_optimizer"]["device"] == "cpu"
    assert three["optimizer"]["type"] == "AdamW"  # DeepSpeed's CPU Adam steps the offloaded state
    # transformers fills these from the TrainingArguments ftx built from [train]: they can never disagree
    assert three["train_micro_batch_size_per_gpu"] == three["gradient_accumulation_steps"] == "auto"
    two = build_config(DistributedSection.model_construct(**{**DistributedSection().model_dump(), "zero_stage": 2}))
    assert two["zero_optimization"]["stage"] == 2 and "optimizer" not in two
    assert not any(key.startswith("stage3") for key in two["zero_optimization"])
    json.dumps(three)  # written into the run folder as deepspeed.json


def test_fsdp_settings_reach_accelerates_plugin_as_fsdp2_with_sharded_checkpoints(tmp_path):
    from ftx.recipe.schema import DistributedSection
    from ftx.training import fsdp_config
    from transformers import TrainingArguments

    section = DistributedSection(strategy="fsdp", reshard_after_forward=False)
    args = TrainingArguments(output_dir=str(tmp_path), fsdp=True, fsdp_config=fsdp_config(section, True), use_cpu=True,
                             report_to="none")
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["state_dict_type"] == "SHARDED_STATE_DICT"
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"  # each decoder layer (_no_split_modules) one unit
    assert plugin["reshard_after_forward"] is False and plugin["activation_checkpointing"] is True


def test_sharded_strategies_always_run_under_the_launcher():
    from ftx.distributed import needs_launcher

    assert not needs_launcher(1, 1, "ddp")
    assert needs_launcher(2, 1, "ddp") and needs_launcher(1, 2, "ddp")
    assert needs_launcher(1, 1, "fsdp") and needs_launcher(1, 1, "deepspeed")


def test_meta_copy_costs_no_memory_keeps_ties_and_loads_full_weights():
    import torch
    from ftx.sharded import meta_copy
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))
    skeleton = meta_copy(model)
    assert all(p.is_meta for p in skeleton.parameters())
    assert skeleton.lm_head.weight is skeleton.model.embed_tokens.weight
    buffers = dict(skeleton.named_buffers())
    for name, buffer in model.named_buffers():  # rotary frequencies: in no state dict, so copied
        assert torch.equal(buffers[name], buffer) and buffers[name].data_ptr() != buffer.data_ptr()
    assert all(not p.is_meta for p in model.parameters())  # the original is untouched
    skeleton.load_state_dict(model.state_dict(), strict=False, assign=True)
    skeleton.tie_weights()
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(skeleton(ids).logits, model(ids).logits)


def test_run_folders_of_earlier_versions_still_read(tmp_path):
    """A recipe.lock.toml written before sharded training spelled ``distributed.fsdp = "full_shard auto_wrap"``:
    the run folder must stay readable (export, serve, resume); any other value of the gone key is refused by name."""
    from ftx.recipe.schema import DistributedSection
    from pydantic import ValidationError

    assert DistributedSection.model_validate({"strategy": "ddp", "fsdp": "full_shard auto_wrap"}).strategy == "ddp"
    with pytest.raises(ValidationError, match="fsdp .*is gone"):
        DistributedSection.model_validate({"strategy": "fsdp", "fsdp": "shard_grad_op"})
