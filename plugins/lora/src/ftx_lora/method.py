"""LoRA and QLoRA on peft: build the adapters, train only them, save an adapter or a merged model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from ftx.errors import RecipeError, RunError
from ftx_hookspecs import RunContext

from . import LoraOptions, QLoraOptions
from .targets import check_modules_to_save, resolve_targets, task_type


class LoraMethod:
    """Adapters on every targeted linear layer of a frozen base (``lora`` and ``dora``)."""

    def __init__(self, options: LoraOptions) -> None:
        self.options = options

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        return {}

    def lora_config(self, model: Any) -> Any:
        """peft's ``LoraConfig`` for this model, after checking the named modules exist."""
        from peft import LoraConfig

        opts = self.options
        if opts.modules_to_save:
            check_modules_to_save(opts.modules_to_save, model)
        return LoraConfig(
            r=opts.r,
            lora_alpha=opts.scale_alpha,
            lora_dropout=opts.dropout,
            target_modules=resolve_targets(opts.target_modules, model),
            use_dora=opts.use_dora,
            use_rslora=opts.use_rslora,
            modules_to_save=list(opts.modules_to_save) or None,
            bias=opts.bias,
            task_type=task_type(model),
        )

    def apply(self, model: Any, ctx: RunContext) -> Any:
        from peft import get_peft_model

        config = self.lora_config(model)
        if ctx.train.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        return get_peft_model(model, config)

    def compute_dtype(self, ctx: RunContext) -> Any:
        """The dtype a merged export is written in: the base's own floating dtype."""
        import torch

        from ftx.api import resolve_dtype

        return resolve_dtype(ctx.recipe["model"].get("dtype", "auto"), ctx.device) or torch.float32

    def save(self, model: Any, path: Path, ctx: RunContext) -> None:
        mode = ctx.recipe.get("output", {}).get("save", "auto")
        if mode == "merged":
            from .merge import merged_model

            merged_model(model, self.compute_dtype(ctx)).save_pretrained(path)
            return
        save_adapter(model, path, ctx)


def save_adapter(model: Any, path: Path, ctx: RunContext) -> None:
    """Write the adapter with an absolute base path, plus ``ftx_base.json`` saying how ftx made that base."""
    for config in model.peft_config.values():
        base = config.base_model_name_or_path
        if base and Path(base).exists():
            config.base_model_name_or_path = str(Path(base).resolve())
    model.save_pretrained(path)
    section = ctx.recipe.get("model", {})
    info = {
        "model": section.get("name"),
        "config": section.get("config") or {},
        "pretrain_steps": section.get("pretrain_steps", 0),
        "base_model_name_or_path": next(iter(model.peft_config.values())).base_model_name_or_path,
        "architecture": type(model.get_base_model()).__name__,
        "quantized_base": bool(getattr(model.get_base_model(), "is_loaded_in_4bit", False)),
    }
    (Path(path) / "ftx_base.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def require_bitsandbytes() -> Any:
    """Import bitsandbytes, or fail before the model loads with what to install."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RunError(
            "method 'qlora' needs bitsandbytes, which is not installed: pip install bitsandbytes "
            "(or pip install 'ftx-lora[qlora]'); or use method 'lora' without quantisation"
        )
    try:
        import bitsandbytes
    except Exception as exc:  # noqa: BLE001 - a broken install must say what broke
        raise RunError(f"method 'qlora': bitsandbytes is installed but does not import ({exc}); "
                       "reinstall it with pip install -U bitsandbytes") from exc
    return bitsandbytes


class QLoraMethod(LoraMethod):
    """LoRA on a base whose linear layers bitsandbytes stores in 4 bits (NF4 or FP4)."""

    options: QLoraOptions

    def __init__(self, options: QLoraOptions) -> None:
        super().__init__(options)

    def compute_dtype(self, ctx: RunContext) -> Any:
        import torch

        name = self.options.compute_dtype
        if name == "auto":
            if ctx.device == "cuda" and torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return torch.float32
        return getattr(torch, name)

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        require_bitsandbytes()
        if ctx.device not in ("cpu", "cuda"):
            raise RecipeError(f"train.device: bitsandbytes 4-bit layers run on cpu and cuda, not {ctx.device!r}; "
                              "set train.device = \"cpu\" or use method 'lora'")
        from transformers import BitsAndBytesConfig

        compute = self.compute_dtype(ctx)
        kwargs: dict[str, Any] = {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=self.options.quant_type,
                bnb_4bit_use_double_quant=self.options.double_quant,
                bnb_4bit_compute_dtype=compute,
                bnb_4bit_quant_storage="uint8",
            ),
        }
        if ctx.recipe.get("model", {}).get("dtype", "auto") == "auto":
            kwargs["dtype"] = compute
        if ctx.device == "cuda":
            import torch

            kwargs["device_map"] = {"": torch.cuda.current_device()}
        return kwargs

    def apply(self, model: Any, ctx: RunContext) -> Any:
        import bitsandbytes as bnb
        from peft import get_peft_model, prepare_model_for_kbit_training

        quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
        if not quantized:
            model_type = getattr(model.config, "model_type", type(model).__name__)
            raise RunError(
                f"method 'qlora': bitsandbytes quantised none of the layers of this {model_type!r} model "
                "(it has no torch.nn.Linear layers bitsandbytes can replace); use method 'lora' instead"
            )
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                # bitsandbytes repacks 4-bit weights on the first no-grad CPU forward (evaluation) into a
                # bf16 inference layout whose inverse re-quantises the constants: the evaluated model would
                # differ from the trained one, and a merge could not recover the exact weights. Keep one layout.
                module.support_avx512bf16_for_cpu = False
        config = self.lora_config(model)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=self.options.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        return get_peft_model(model, config)
