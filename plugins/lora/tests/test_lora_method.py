"""LoRA and QLoRA on the tiny model: what trains, what is quantised, and that exports reload exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ftx.errors import RecipeError, RunError
from ftx_lora import LoraOptions, QLoraOptions
from ftx_lora.method import LoraMethod, QLoraMethod

from conftest import make_ctx, randomize_adapter

PROMPTS = [[5, 17, 42, 99, 7], [120, 3, 3, 64], [250, 11, 80, 31, 2, 9]]


def greedy(model, prompts=PROMPTS, new_tokens: int = 8) -> list[list[int]]:
    """Greedy continuations of raw token ids, so no tokenizer or template is involved."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
            out.append(y[0, len(ids):].tolist())
    return out


def load_in_clean_process(folder: Path, prompts=PROMPTS, new_tokens: int = 8) -> dict:
    """Load an export with plain transformers in a process that must not import ftx or peft."""
    script = textwrap.dedent(f"""
        import json, sys, torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(folder)!r}).eval()
        out = []
        with torch.no_grad():
            for ids in {prompts!r}:
                x = torch.tensor([ids])
                y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens={new_tokens},
                                   min_new_tokens={new_tokens}, do_sample=False, pad_token_id=0)
                out.append(y[0, len(ids):].tolist())
        print(json.dumps({{"generations": out, "classes": sorted({{type(m).__module__.split('.')[0]
                          for m in model.modules()}}),
                          "ftx": any(m == "ftx" or m.startswith(("ftx.", "ftx_")) for m in sys.modules),
                          "peft": any(m == "peft" or m.startswith("peft.") for m in sys.modules)}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=folder.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_auto_targets_every_projection_and_counts_them(tiny_model_factory):
    model = LoraMethod(LoraOptions(r=4)).apply(tiny_model_factory(), make_ctx())
    cfg = model.config
    h, i = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    per_layer = 4 * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 3)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == per_layer * cfg.num_hidden_layers
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_unknown_target_module_lists_the_linear_modules(tiny_model_factory):
    with pytest.raises(RecipeError, match=r"method.target_modules: no module named 'qkv'.*q_proj.*down_proj"):
        LoraMethod(LoraOptions(target_modules=["q_proj", "qkv"])).apply(tiny_model_factory(), make_ctx())


def test_regex_matching_nothing_fails(tiny_model_factory):
    with pytest.raises(RecipeError, match="method.target_modules: the regular expression"):
        LoraMethod(LoraOptions(target_modules=r"q_proj")).apply(tiny_model_factory(), make_ctx())
    model = LoraMethod(LoraOptions(target_modules=r".*\.(q|v)_proj")).apply(tiny_model_factory(), make_ctx())
    adapted = {n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"q_proj", "v_proj"}


def test_target_that_selects_a_non_linear_module_names_it(tiny_model_factory):
    with pytest.raises(RecipeError, match=r"method.target_modules: .*act_fn.*SiLU"):
        LoraMethod(LoraOptions(target_modules=r".*\.mlp\..*")).apply(tiny_model_factory(), make_ctx())
    with pytest.raises(RecipeError, match=r"method.target_modules: .*'mlp'"):
        LoraMethod(LoraOptions(target_modules=["mlp"])).apply(tiny_model_factory(), make_ctx())


def test_unknown_module_to_save_names_the_key(tiny_model_factory):
    with pytest.raises(RecipeError, match="method.modules_to_save"):
        LoraMethod(LoraOptions(modules_to_save=["classifier"])).apply(tiny_model_factory(), make_ctx())


def test_lora_merged_export_loads_plainly_and_generates_like_base_plus_adapter(tiny_model_factory, tmp_path):
    method = LoraMethod(LoraOptions(r=4, target_modules="all-linear"))
    model = method.apply(tiny_model_factory(), make_ctx())
    randomize_adapter(model)
    expected = greedy(model)
    assert expected != greedy(model.get_base_model().__class__.from_pretrained(model.peft_config["default"].base_model_name_or_path))
    method.save(model, tmp_path / "merged", make_ctx(save="merged"))
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    seen = load_in_clean_process(tmp_path / "merged")
    assert seen["ftx"] is False and seen["peft"] is False
    assert seen["generations"] == expected


def test_adapter_export_reloads_onto_its_recorded_base(tiny_model_factory, tmp_path):
    import torch
    from peft import AutoPeftModelForCausalLM

    method = LoraMethod(LoraOptions(r=4, use_dora=True))
    model = method.apply(tiny_model_factory(), make_ctx())
    randomize_adapter(model)
    method.save(model, tmp_path / "adapter", make_ctx())
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]).is_absolute()
    assert (Path(config["base_model_name_or_path"]) / "config.json").exists()
    assert json.loads((tmp_path / "adapter" / "ftx_base.json").read_text())["model"] == "builtin:tiny-llama"
    reloaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter").eval()
    x = torch.tensor(PROMPTS[:1])
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=x).logits, model.eval()(input_ids=x).logits, atol=1e-5)


@pytest.fixture
def qlora_model(tiny_model_path):
    """The tiny model loaded the way the runner loads it for QLoRA: 4-bit via Method.load_kwargs."""
    from ftx.training import quiet_libraries
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    method = QLoraMethod(QLoraOptions(r=4, target_modules="all-linear"))
    kwargs = method.load_kwargs(make_ctx())
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, **kwargs)
    return method, model


def test_qlora_base_linear_layers_are_4bit(qlora_model):
    import bitsandbytes as bnb
    import torch

    method, model = qlora_model
    linear = {n: type(m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
    assert linear and all(cls is bnb.nn.Linear4bit for cls in linear.values()), linear
    peft_model = method.apply(model, make_ctx())
    bases = [m.base_layer for n, m in peft_model.named_modules() if hasattr(m, "base_layer")]
    assert len(bases) == len(linear) and all(isinstance(b, bnb.nn.Linear4bit) for b in bases)
    assert all(b.weight.quant_state.quant_type == "nf4" for b in bases)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_qlora_merged_export_equals_dequantized_base_plus_adapter(qlora_model, tmp_path):
    import torch
    from ftx_lora.merge import dequantized_peft_model

    method, model = qlora_model
    peft_model = method.apply(model, make_ctx())
    randomize_adapter(peft_model)
    reference = dequantized_peft_model(peft_model, torch.float32)
    expected = greedy(reference)
    x = torch.tensor(PROMPTS[:1])
    with torch.no_grad():  # the unquantised copy computes what the 4-bit model computes
        assert torch.allclose(reference(input_ids=x).logits, peft_model.eval()(input_ids=x).logits, atol=1e-3)
    method.save(peft_model, tmp_path / "merged", make_ctx(save="merged"))
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
    seen = load_in_clean_process(tmp_path / "merged")
    assert seen["ftx"] is False and seen["peft"] is False and "bitsandbytes" not in seen["classes"]
    assert seen["generations"] == expected


def test_qlora_without_bitsandbytes_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(RunError, match="pip install bitsandbytes"):
        QLoraMethod(QLoraOptions()).load_kwargs(make_ctx())


def test_qlora_on_a_model_bitsandbytes_did_not_quantize_fails_clearly(tiny_model_factory):
    with pytest.raises(RunError, match="quantised none of the layers.*use method 'lora'"):
        QLoraMethod(QLoraOptions()).apply(tiny_model_factory(), make_ctx())


def test_qlora_refuses_mps_before_loading():
    with pytest.raises(RecipeError, match="train.device"):
        QLoraMethod(QLoraOptions()).load_kwargs(make_ctx(device="mps"))


def test_the_method_reloads_merges_and_names_the_base_of_what_it_saved(tiny_model_factory, tiny_model_path, tmp_path):
    """Method.load_trained / merge / trained_base (ftx-hookspecs 1.2): what ftx eval and ftx export call."""
    import torch
    from ftx_lora import DoraOptions

    method = LoraMethod(LoraOptions(r=4))
    model = method.apply(tiny_model_factory(), make_ctx())
    randomize_adapter(model)
    method.save(model, tmp_path / "adapter", make_ctx())
    x = torch.tensor(PROMPTS[:1])
    with torch.no_grad():
        wanted = model.eval()(input_ids=x).logits

    assert method.trained_base(tmp_path / "adapter") == {"name": str(Path(tiny_model_path).resolve())}
    assert method.trained_base(tmp_path) is None  # not an adapter folder
    assert LoraMethod(DoraOptions(r=4)).trained_base(tmp_path / "adapter") is None  # a LoRA adapter, not DoRA's
    assert QLoraMethod(QLoraOptions(r=4)).trained_base(tmp_path / "adapter") is None  # its base was not 4-bit

    reloaded = method.load_trained(tiny_model_factory(), tmp_path / "adapter", None)
    merged = method.merge(reloaded, None)
    assert not [m for m in merged.modules() if type(m).__module__.startswith("peft")]
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(input_ids=x).logits, wanted, atol=1e-5)
        assert torch.allclose(merged.eval()(input_ids=x).logits, wanted, atol=1e-4)


def test_core_loads_an_adapter_folder_without_its_run_through_the_method_that_recognises_it(
        tiny_model_factory, tmp_path, ftx_home):
    """ftx.api.load_trained asks the installed methods: ftx core itself imports no peft."""
    import torch
    from ftx.api import find_trained, load_trained, merge_trained

    method = LoraMethod(LoraOptions(r=4, use_dora=True))
    model = method.apply(tiny_model_factory(), make_ctx())
    randomize_adapter(model)
    method.save(model, tmp_path / "adapter", make_ctx())
    source = find_trained(tmp_path / "adapter")
    assert source.run_dir is None and not source.is_full
    trained = load_trained(source, device="cpu")
    assert trained.method_name == "dora" and Path(trained.base).is_dir()
    x = torch.tensor(PROMPTS[:1])
    with torch.no_grad():
        assert torch.allclose(trained.model(input_ids=x).logits, model.eval()(input_ids=x).logits, atol=1e-5)
        merged = merge_trained(trained)
        assert torch.allclose(merged(input_ids=x).logits, model(input_ids=x).logits, atol=1e-4)


def test_lora_also_reloads_a_peft_adapter_of_another_type(tiny_model_factory, tmp_path):
    """A 1.1 method without load_trained that saved a peft adapter (IA3, say) still reloads: lora recognises it."""
    import torch
    from ftx_lora import DoraOptions
    from peft import IA3Config, get_peft_model

    model = get_peft_model(tiny_model_factory(), IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj"],
                                                           feedforward_modules=[]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ia3_l" in name:
                param.fill_(1.5)
    model.save_pretrained(tmp_path / "ia3")
    lora = LoraMethod(LoraOptions())
    assert lora.trained_base(tmp_path / "ia3") is not None
    assert LoraMethod(DoraOptions()).trained_base(tmp_path / "ia3") is None
    assert QLoraMethod(QLoraOptions()).trained_base(tmp_path / "ia3") is None
    reloaded = lora.load_trained(tiny_model_factory(), tmp_path / "ia3", None)
    x = torch.tensor(PROMPTS[:1])
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(input_ids=x).logits, model.eval()(input_ids=x).logits, atol=1e-5)
