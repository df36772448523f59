"""LoRA and QLoRA on peft: build the adapters, train only them, save an adapter or a merged model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from ftx.errors import RecipeError, RunError
from ftx_hookspecs import RunContext

from . import Int8Options, LoraOptions, QLoraOptions
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
            init_lora_weights=True if opts.init == "default" else opts.init,
            trainable_token_indices=new_token_rows(model, opts.modules_to_save),
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
        peft_model = get_peft_model(model, config)
        remember_initial_adapter(peft_model)
        return peft_model

    def optimizer_param_groups(self, model: Any, lr: float, weight_decay: float) -> list[dict[str, Any]] | None:
        """LoRA+ (``loraplus_lr_ratio``): the B matrices (and 1-D adapter weights) at ``lr x ratio``, the rest at
        ``lr``, as peft's ``create_loraplus_optimizer`` splits them; ``None`` (one learning rate) without it."""
        ratio = self.options.loraplus_lr_ratio
        if ratio is None:
            return None
        groups: dict[tuple[bool, bool], list[Any]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                fast = "lora_B" in name or ("lora_" in name and param.ndim == 1)
                groups.setdefault((fast, param.ndim > 1), []).append(param)
        return [{"params": params, "lr": lr * ratio if fast else lr, "weight_decay": weight_decay if decay else 0.0}
                for (fast, decay), params in sorted(groups.items())]

    def compute_dtype(self, ctx: RunContext) -> Any:
        """The dtype a merged export is written in: the base's own floating dtype."""
        import torch
        from ftx.api import resolve_dtype

        return resolve_dtype(ctx.recipe["model"].get("dtype", "auto"), ctx.device) or torch.float32

    def save(self, model: Any, path: Path, ctx: RunContext) -> None:
        mode = ctx.recipe.get("output", {}).get("save", "auto")
        if mode == "merged":
            self.merge(model, ctx).save_pretrained(path)
            return
        save_adapter(model, path, ctx)

    def load_trained(self, model: Any, path: Path, ctx: RunContext | None) -> Any:
        """The adapter saved in ``path`` back on its base ``model`` (loaded as for training), for inference."""
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(path))

    def merge(self, model: Any, ctx: RunContext | None) -> Any:
        """The adapter folded into the base: a plain transformers model; a 4-bit base is dequantised first."""
        from .merge import count_quantized, merged_model

        dtype = self.compute_dtype(ctx) if ctx is not None else model.get_input_embeddings().weight.dtype
        quantized = count_quantized(model)
        if quantized and ctx is not None:
            ctx.echo(f"merge: dequantising {quantized} quantised layers to {str(dtype).replace('torch.', '')}")
        return merged_model(model, dtype)

    def trained_base(self, path: Path) -> dict[str, Any] | None:
        """For an adapter folder of this flavour (LoRA or DoRA, unquantised base), the ``[model]`` table of its
        base; else ``None``. ``lora`` also answers for peft adapters of other types: peft loads them alike."""
        saved = read_adapter(Path(path))
        if saved is None or not self.saved_this(*saved):
            return None
        return base_table(Path(path), *saved)

    def saved_this(self, config: dict[str, Any], info: dict[str, Any]) -> bool:
        """Whether an adapter with this ``adapter_config.json`` and ``ftx_base.json`` is of this method's flavour."""
        if config.get("peft_type", "LORA") != "LORA":
            return type(self) is LoraMethod and not self.options.use_dora
        return bool(config.get("use_dora")) == self.options.use_dora and not info.get("quantized_base")


def read_adapter(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(adapter_config.json, ftx_base.json or {})`` of an adapter folder; ``None`` when ``path`` holds no adapter."""
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        return None
    found = []
    for file in (config_file, path / "ftx_base.json"):
        try:
            found.append(json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {})
        except (OSError, ValueError) as exc:
            raise RunError(f"{file}: cannot read it ({exc})") from exc
    return found[0], found[1]


def base_table(path: Path, config: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The ``[model]`` table of a saved adapter's base: its recorded base folder when it still exists, else how
    ftx built that base (``ftx_base.json``), else the hub id peft recorded."""
    named = config.get("base_model_name_or_path")
    if named and Path(named).is_dir():
        return {"name": str(named)}
    if info.get("model"):
        return {"name": info["model"], "config": info.get("config") or {},
                "pretrain_steps": info.get("pretrain_steps") or 0}
    if named:
        return {"name": str(named)}
    raise RunError(f"adapter {path} names no base model (adapter_config.json base_model_name_or_path); "
                   "give the run folder it came from")


def save_adapter(model: Any, path: Path, ctx: RunContext) -> None:
    """Write the adapter with an absolute base path, plus ``ftx_base.json`` saying how ftx made that base."""
    for config in model.peft_config.values():
        base = config.base_model_name_or_path
        if base and Path(base).exists():
            config.base_model_name_or_path = str(Path(base).resolve())
    initial = getattr(model, "_ftx_initial_adapter", None)
    if initial is None:
        model.save_pretrained(path, **embedding_kwargs(model))
    else:
        save_converted(model, path, initial)
    section = ctx.recipe.get("model", {})
    info = {
        "model": section.get("name"),
        "config": section.get("config") or {},
        "pretrain_steps": section.get("pretrain_steps", 0),
        "base_model_name_or_path": next(iter(model.peft_config.values())).base_model_name_or_path,
        "architecture": type(model.get_base_model()).__name__,
        "quantized_base": bool(getattr(model.get_base_model(), "is_loaded_in_4bit", False)
                               or getattr(model.get_base_model(), "is_loaded_in_8bit", False)),
        "quantized_bits": 8 if getattr(model.get_base_model(), "is_loaded_in_8bit", False) else 4,
    }
    (Path(path) / "ftx_base.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def require_bitsandbytes(method: str = "qlora") -> Any:
    """Import bitsandbytes, or fail before the model loads with what to install."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RunError(
            f"method {method!r} needs bitsandbytes, which is not installed: pip install bitsandbytes "
            "(or pip install 'ftx-lora[qlora]'); or use method 'lora' without quantisation"
        )
    try:
        import bitsandbytes
    except Exception as exc:  # noqa: BLE001 - a broken install must say what broke
        raise RunError(f"method {method!r}: bitsandbytes is installed but does not import ({exc}); "
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

    def saved_this(self, config: dict[str, Any], info: dict[str, Any]) -> bool:
        """A LoRA adapter ftx saved from a 4-bit base."""
        return (config.get("peft_type", "LORA") == "LORA" and bool(info.get("quantized_base"))
                and info.get("quantized_bits", 4) == 4)

    def load_trained(self, model: Any, path: Path, ctx: RunContext | None) -> Any:
        """The adapter on its 4-bit base, with the weight layout training used (see :meth:`apply`)."""
        keep_training_layout(model)
        return super().load_trained(model, path, ctx)

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
        keep_training_layout(model)
        config = self.lora_config(model)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=self.options.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        return get_peft_model(model, config)


def keep_training_layout(model: Any) -> None:
    """Keep bitsandbytes' 4-bit weights in their training layout on the CPU.

    bitsandbytes repacks 4-bit weights on the first no-grad CPU forward (evaluation) into a bf16
    inference layout whose inverse re-quantises the constants: the evaluated model would differ from
    the trained one, and a merge could not recover the exact weights. Keep one layout.
    """
    for module in model.modules():
        if type(module).__name__ == "Linear4bit" and type(module).__module__.startswith("bitsandbytes"):
            module.support_avx512bf16_for_cpu = False


def new_token_rows(model: Any, modules_to_save: list[str]) -> dict[str, list[int]] | None:
    """The embedding rows the run's tokenizer added (chat-template tokens, after ``resize_token_embeddings``), for
    peft's ``trainable_token_indices``: only those rows train and are saved, not the whole embedding and output
    matrices. ``None`` when the vocabulary was not grown, or the embeddings train whole (``modules_to_save``)."""
    embeddings, output = model.get_input_embeddings(), model.get_output_embeddings()
    if embeddings is None:
        return None
    base_rows = saved_vocab_size(model)
    rows = embeddings.weight.shape[0]
    if base_rows is None or rows <= base_rows:
        return None
    names = {id(module): name for name, module in model.named_modules()}
    layers = [embeddings]
    if output is not None and output.weight is not embeddings.weight:
        layers.append(output)  # untied: the new output rows would otherwise stay at their random start, unsaved
    if any(names.get(id(layer), "").split(".")[-1] in modules_to_save for layer in layers):
        return None
    ids = list(range(base_rows, rows))
    return {names[id(layer)]: ids for layer in layers if id(layer) in names} or None


def saved_vocab_size(model: Any) -> int | None:
    """The vocabulary size in the base's own ``config.json`` (before ftx grew it); ``None`` when it cannot be read."""
    source = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not source:
        return None
    try:
        return int(type(model.config).from_pretrained(source).vocab_size)
    except Exception:  # noqa: BLE001 - an unreadable config only means the rows are not found
        return None


def embedding_kwargs(model: Any) -> dict[str, Any]:
    """``save_pretrained`` arguments: with the new rows trained as tokens, peft must not also save the whole
    resized embedding and output matrices (its ``auto`` does, seeing a vocabulary larger than the base's)."""
    if any(getattr(c, "trainable_token_indices", None) for c in model.peft_config.values()):
        return {"save_embedding_layers": False}
    return {}


INIT_FOLDER = "ftx_initial_adapter"
"""Where the initial adapter waits while peft converts (peft names an adapter after the folder: no dots)."""


def remember_initial_adapter(model: Any) -> None:
    """For PiSSA and OLoRA, which move part of each base weight into the adapter: keep the adapter as it starts,
    so :func:`save_converted` can write an adapter for the *original* base."""
    config = next(iter(model.peft_config.values()))
    init = config.init_lora_weights
    if isinstance(init, str) and (init.startswith("pissa") or init == "olora"):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
        model._ftx_initial_adapter = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def save_converted(model: Any, path: Path, initial: dict[str, Any]) -> None:
    """Save a PiSSA/OLoRA adapter converted by peft into a plain LoRA adapter (rank 2r) on the unchanged base.

    The trained adapter alone only fits the residual base PiSSA left behind, which is not saved; peft's
    ``path_initial_model_for_weight_conversion`` subtracts the initial adapter to undo that.
    """
    import copy
    import shutil

    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import save_file

    path = Path(path)
    folder = path.parent / INIT_FOLDER
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        name = model.active_adapter
        config = copy.deepcopy(model.peft_config[name])
        config.init_lora_weights = True  # peft reads the initial adapter as plain LoRA weights
        config.save_pretrained(str(folder))
        save_file({k: v.contiguous() for k, v in initial.items()}, str(folder / SAFETENSORS_WEIGHTS_NAME))
        model.save_pretrained(str(path), path_initial_model_for_weight_conversion=str(folder), **embedding_kwargs(model))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Int8Method(LoraMethod):
    """LoRA on a base whose linear layers bitsandbytes stores in 8 bits (LLM.int8, with 16-bit outlier features)."""

    options: Int8Options

    def __init__(self, options: Int8Options) -> None:
        super().__init__(options)

    def compute_dtype(self, ctx: RunContext) -> Any:
        """The dtype of the unquantised layers and of a merged export: ``compute_dtype``, auto: bf16 on GPU, else fp32."""
        import torch

        name = self.options.compute_dtype
        if name == "auto":
            return torch.bfloat16 if ctx.device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        return getattr(torch, name)

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        require_bitsandbytes("int8")
        if ctx.device not in ("cpu", "cuda"):
            raise RecipeError(f"train.device: bitsandbytes 8-bit layers run on cpu and cuda, not {ctx.device!r}; "
                              "set train.device = \"cpu\" or use method 'lora'")
        from transformers import BitsAndBytesConfig

        kwargs: dict[str, Any] = {
            "quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=self.options.threshold),
        }
        if ctx.recipe.get("model", {}).get("dtype", "auto") == "auto":
            kwargs["dtype"] = self.compute_dtype(ctx)
        if ctx.device == "cuda":
            import torch

            kwargs["device_map"] = {"": torch.cuda.current_device()}
        return kwargs

    def saved_this(self, config: dict[str, Any], info: dict[str, Any]) -> bool:
        """A LoRA adapter ftx saved from an 8-bit base."""
        return config.get("peft_type", "LORA") == "LORA" and info.get("quantized_bits") == 8

    def apply(self, model: Any, ctx: RunContext) -> Any:
        import bitsandbytes as bnb
        from peft import get_peft_model, prepare_model_for_kbit_training

        if not any(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules()):
            model_type = getattr(model.config, "model_type", type(model).__name__)
            raise RunError(f"method 'int8': bitsandbytes quantised none of the layers of this {model_type!r} model; "
                           "use method 'lora' instead")
        config = self.lora_config(model)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=self.options.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        return get_peft_model(model, config)
