"""Issue 19's LoRA choices: PiSSA/OLoRA starts, LoRA+ learning rates, the int8 base, and new template tokens
trained (and saved) as single embedding rows."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ftx.demo_data import reverse_rows, write_jsonl
from ftx.testing import TINY_TEST_CONFIG
from ftx_lora import Int8Options, LoraOptions, QLoraOptions
from ftx_lora.method import Int8Method, LoraMethod
from pydantic import ValidationError

from conftest import make_ctx


def _layer(model, name="q_proj"):
    return next(m for n, m in model.named_modules() if n.endswith(f"layers.0.self_attn.{name}"))


def _delta(layer):
    """``scale x B @ A`` of a peft LoRA layer (the update it adds to the base weight)."""
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    return layer.scaling["default"] * (b @ a)


def test_pissa_moves_the_top_singular_part_of_each_weight_into_the_adapter(tiny_model_factory):
    import torch

    original = _layer(tiny_model_factory()).weight.detach().clone()
    default = LoraMethod(LoraOptions(r=4, target_modules=["q_proj"])).apply(tiny_model_factory(), make_ctx())
    assert torch.count_nonzero(_delta(_layer(default))) == 0  # B = 0: the adapter starts as a no-op

    model = LoraMethod(LoraOptions(r=4, target_modules=["q_proj"], init="pissa")).apply(tiny_model_factory(), make_ctx())
    layer = _layer(model)
    delta = _delta(layer).detach()
    residual = layer.base_layer.weight.detach()
    assert delta.abs().max() > 1e-3  # B @ A is not zero at step 0
    torch.testing.assert_close(residual + delta, original, atol=1e-5, rtol=1e-5)  # base = W - B @ A
    # the adapter holds the best rank-4 approximation of W (its top 4 singular values)
    top = torch.linalg.svdvals(original)[:4]
    torch.testing.assert_close(torch.linalg.svdvals(delta)[:4], top, atol=1e-4, rtol=1e-4)

    olora = LoraMethod(LoraOptions(r=4, target_modules=["q_proj"], init="olora")).apply(tiny_model_factory(), make_ctx())
    layer = _layer(olora)
    torch.testing.assert_close(layer.base_layer.weight + _delta(layer), original, atol=1e-5, rtol=1e-5)


def test_a_pissa_adapter_is_saved_for_the_unchanged_base(tiny_model_factory, tmp_path):
    import torch

    method = LoraMethod(LoraOptions(r=4, target_modules=["q_proj", "v_proj"], init="pissa_niter_2"))
    model = method.apply(tiny_model_factory(), make_ctx())
    with torch.no_grad():  # stand in for training: move every adapter weight
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(0.05 * torch.randn_like(param))
    x = torch.tensor([[5, 17, 42, 99, 7, 120, 3]])
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=x).logits
    method.save(model, tmp_path / "adapter", make_ctx())
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True  # converted: plain LoRA of rank 2r
    assert not (tmp_path / "ftx_initial_adapter").exists()
    reloaded = method.load_trained(tiny_model_factory(), tmp_path / "adapter", None).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=x).logits, trained, atol=1e-4, rtol=1e-4)
        merged = method.merge(reloaded, None)
        torch.testing.assert_close(merged(input_ids=x).logits, trained, atol=1e-4, rtol=1e-4)


def test_init_values_are_checked_when_the_recipe_is_read():
    assert LoraOptions(init="pissa_niter_16").init == "pissa_niter_16"
    with pytest.raises(ValidationError, match="unknown init 'svd'.*pissa_niter_<n>"):
        LoraOptions(init="svd")
    with pytest.raises(ValidationError, match="init: 'pissa' rewrites the base weights.*use method 'lora'"):
        QLoraOptions(init="pissa")
    with pytest.raises(ValidationError, match="init: 'olora' rewrites the base weights"):
        Int8Options(init="olora")


def test_loraplus_gives_the_b_matrices_the_ratio_through_ctx_fit_optimizer(tiny_model_factory, tmp_path):
    from ftx.trainer import attach_guards
    from transformers import Trainer, TrainingArguments

    method = LoraMethod(LoraOptions(r=4, use_dora=True, loraplus_lr_ratio=16))
    model = method.apply(tiny_model_factory(), make_ctx())
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.1, use_cpu=True,
                             report_to="none", optim="adamw_torch")
    trainer = Trainer(model=model, args=args)
    ctx = SimpleNamespace(train=SimpleNamespace(max_bad_steps=5, divergence_factor=0), method=method,
                          echo=lambda _m: None)
    attach_guards(trainer, ctx)
    optimizer = trainer.create_optimizer()
    assert type(optimizer).__name__ == "AdamW" and optimizer._ftx_guarded
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(lr_of) == len(trainable)
    for name, param in trainable:
        expected = 16e-3 if "lora_B" in name or "magnitude" in name else 1e-3
        assert lr_of[id(param)] == pytest.approx(expected), name
        assert decay_of[id(param)] == (0.1 if param.ndim > 1 else 0.0), name
    # without the option the Trainer's own groups: one learning rate
    plain = LoraMethod(LoraOptions(r=4))
    trainer = Trainer(model=plain.apply(tiny_model_factory(), make_ctx()), args=args)
    attach_guards(trainer, SimpleNamespace(train=ctx.train, method=plain, echo=ctx.echo))
    assert {g["lr"] for g in trainer.create_optimizer().param_groups} == {1e-3}


def test_int8_refuses_a_device_bitsandbytes_cannot_run_8_bit_layers_on(monkeypatch):
    from ftx.errors import RecipeError, RunError

    method = Int8Method(Int8Options())
    with pytest.raises(RecipeError, match=r"train.device: bitsandbytes 8-bit layers run on cpu and cuda, not 'mps'"):
        method.load_kwargs(make_ctx(device="mps"))
    kwargs = method.load_kwargs(make_ctx())
    assert kwargs["quantization_config"].load_in_8bit and kwargs["quantization_config"].llm_int8_threshold == 6.0
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(RunError, match="method 'int8' needs bitsandbytes, which is not installed: pip install"):
        method.load_kwargs(make_ctx())


def _recipe(method: dict, train: str = "reverse.jsonl", **model) -> dict:
    return {
        "model": {"name": "builtin:tiny-llama", "config": dict(TINY_TEST_CONFIG), **model},
        "data": {"format": "alpaca", "train": train, "eval": 0.2, "max_length": 48},
        "method": {"r": 4, "dropout": 0.0, **method},
        "objective": {"use": "sft"},
        "train": {"max_steps": 3, "lr": 1e-2, "batch_size": 8, "log_every": 1, "threads": 1},
        "evaluators": [{"use": "loss"}],
        "evaluation": {"forgetting": False, "samples": 0},
    }


@pytest.mark.slow
def test_new_template_tokens_train_as_rows_and_the_adapter_stays_small(write_recipe, run_recipe, tmp_path,
                                                                       monkeypatch):
    import ftx.trainer
    import torch
    from click.testing import CliRunner
    from ftx.api import load_trained
    from ftx.cli import main

    write_jsonl(reverse_rows(60, seed=3), tmp_path / "reverse.jsonl")
    plain = run_recipe(write_recipe(_recipe({"use": "lora"}), "plain.toml"), output=tmp_path / "plain")
    seen = []
    guard = ftx.trainer.guard_optimizer
    monkeypatch.setattr(ftx.trainer, "guard_optimizer", lambda opt, *a: seen.append(opt) or guard(opt, *a))
    grown = run_recipe(write_recipe(_recipe({"use": "lora", "loraplus_lr_ratio": 4}, chat_template="llama3"),
                                    "grown.toml"), output=tmp_path / "grown")
    size = {name: (tmp_path / name / "model" / "adapter_model.safetensors").stat().st_size for name in ("plain", "grown")}
    assert size["grown"] <= 2 * size["plain"], size  # was ~25.9 MB (full embedding and output) vs ~0.1 MB
    config = json.loads((tmp_path / "grown" / "model" / "adapter_config.json").read_text())
    rows = next(iter(config["trainable_token_indices"].values()))
    assert rows == list(range(rows[0], rows[0] + 3))  # llama3's header and end-of-turn tokens, after the base vocabulary
    assert plain["figures"]["trainable_params"] < grown["figures"]["trainable_params"]
    # the run's own optimizer (built by ctx.fit) had LoRA+'s groups: B matrices at 4 x train.lr
    assert len(seen) == 1 and sorted({g["initial_lr"] for g in seen[0].param_groups}) == pytest.approx([1e-2, 4e-2])

    # reloaded on a freshly resized base, the adapter gives the run's own held-out loss: the new rows came back
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "grown")])
    assert result.exit_code == 0, result.output[-2000:]
    assert json.loads(result.stdout)["eval"]["loss"]["loss"] == pytest.approx(grown["after"]["loss"]["loss"], abs=1e-4)
    # and it merges: a plain model whose logits equal the adapter's, new token ids included
    trained = load_trained(tmp_path / "grown", device="cpu")
    new_ids = rows[:2]
    x = torch.tensor([[5, 17, *new_ids, 42, 99]])
    with torch.no_grad():
        expected = trained.model(input_ids=x).logits
        merged = LoraMethod(LoraOptions()).merge(trained.model, None)
        assert "peft" not in type(merged).__module__
        torch.testing.assert_close(merged(input_ids=x).logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_int8_base_trains_a_few_steps_on_cpu_and_reloads(write_recipe, run_recipe, tmp_path):
    from click.testing import CliRunner
    from ftx.cli import main

    write_jsonl(reverse_rows(60, seed=3), tmp_path / "reverse.jsonl")
    recipe = _recipe({"use": "int8", "target_modules": "all-linear", "gradient_checkpointing": False})
    metrics = run_recipe(write_recipe(recipe), output=tmp_path / "run")
    assert metrics["train"]["steps"] == 3.0
    assert metrics["after"]["loss"]["loss"] < metrics["before"]["loss"]["loss"]
    info = json.loads((tmp_path / "run" / "model" / "ftx_base.json").read_text())
    assert info["quantized_base"] and info["quantized_bits"] == 8
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output[-2000:]
    assert json.loads(result.stdout)["eval"]["loss"]["loss"] == pytest.approx(metrics["after"]["loss"]["loss"], abs=1e-3)


def test_loraplus_with_an_optimizer_that_makes_its_own_groups_is_refused(tiny_model_factory, tmp_path):
    from ftx.errors import RunError
    from ftx.trainer import attach_guards
    from transformers import Trainer, TrainingArguments

    method = LoraMethod(LoraOptions(r=4, loraplus_lr_ratio=16))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", optim="galore_adamw",
                             optim_target_modules="all-linear")
    trainer = Trainer(model=method.apply(tiny_model_factory(), make_ctx()), args=args)
    attach_guards(trainer, SimpleNamespace(train=SimpleNamespace(max_bad_steps=5, divergence_factor=0), method=method,
                                           echo=lambda _m: None))
    with pytest.raises(RunError, match=r"train.optimizer 'galore_adamw' builds its own parameter groups.*LoRA\+"):
        trainer.create_optimizer()
