"""Export: merge adapters into the base weights, never into 4-bit weights.

A plain LoRA merge is peft's ``merge_and_unload``. A QLoRA adapter was trained against the
*dequantised* 4-bit base, so its merge first builds an unquantised copy of the base whose weights
are exactly those dequantised values (in the compute dtype), puts the trained adapter on it, and
merges there. (peft's own 4-bit merge re-quantises the sum and loses the adapter's small update.)
"""

from __future__ import annotations

import copy
from typing import Any


def is_quantized(model: Any) -> bool:
    """True when any weight is a bitsandbytes 4-bit or 8-bit parameter."""
    return count_quantized(model) > 0


def count_quantized(model: Any) -> int:
    """How many weights are bitsandbytes 4-bit or 8-bit parameters (one per quantised linear layer)."""
    return sum(type(p).__name__ in ("Params4bit", "Int8Params") for p in model.parameters())


def _source(module: Any) -> Any:
    """The original layer under peft's wrappers (a LoRA layer's base, a saved module's original)."""
    while True:
        if hasattr(module, "base_layer"):
            module = module.base_layer
        elif hasattr(module, "original_module"):
            module = module.original_module
        else:
            return module


def _plain_tensor(param: Any) -> Any:
    """A parameter's values as an ordinary tensor: 4-bit weights are dequantised with their quant state."""
    if type(param).__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf

        data, state = param.data, param.quant_state
        if getattr(state, "packing_format_for_cpu", False):  # bitsandbytes' CPU inference layout: undo on a copy
            data, state = bnbf._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(state))
        return bnbf.dequantize_4bit(data, state)
    if type(param).__name__ == "Int8Params":
        scale = getattr(param, "SCB", None)
        if scale is None:
            raise ValueError("cannot dequantise an 8-bit weight without its scale (SCB)")
        return param.data.float() * scale.float().unsqueeze(1) / 127.0
    return param.data


def dequantized_peft_model(peft_model: Any, dtype: Any) -> Any:
    """An unquantised copy of a (Q)LoRA model: base weights dequantised to ``dtype``, same adapter weights.

    Its outputs equal the quantised model's up to the rounding of the compute dtype; it is what a
    QLoRA merge merges into, and what tests compare a merged export with.
    """
    import torch
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    base = peft_model.get_base_model()
    config = copy.deepcopy(base.config)
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.dtype = dtype
    with torch.device("cpu"):
        fresh = type(base)(config).to(dtype)
    with torch.no_grad():
        for name, module in fresh.named_modules():
            own = dict(module.named_parameters(recurse=False))
            buffers = dict(module.named_buffers(recurse=False))
            if not own and not buffers:
                continue
            source = _source(base.get_submodule(name) if name else base)
            for pname, param in own.items():
                values = _plain_tensor(getattr(source, pname))
                param.copy_(values.reshape(param.shape).to("cpu", dtype))
            for bname, buf in buffers.items():
                theirs = getattr(source, bname, None)
                if isinstance(theirs, torch.Tensor) and theirs.shape == buf.shape:
                    buf.copy_(theirs.to("cpu", buf.dtype))
    fresh.generation_config = copy.deepcopy(base.generation_config)
    name = peft_model.active_adapter
    lora_config = copy.deepcopy(peft_model.peft_config[name])
    lora_config.inference_mode = True
    unquantized = get_peft_model(fresh, lora_config, adapter_name=name)
    state = {k: v.detach().to("cpu", dtype) for k, v in get_peft_model_state_dict(peft_model, adapter_name=name).items()}
    result = set_peft_model_state_dict(unquantized, state, adapter_name=name)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k or "modules_to_save" in k]
    if unexpected:
        raise RuntimeError(f"adapter weights did not transfer to the unquantised copy: {unexpected[:3]}")
    unquantized.eval()
    return unquantized


def merged_model(peft_model: Any, dtype: Any = None) -> Any:
    """The base model with the adapter merged in, as a plain transformers model (no peft classes left).

    A quantised base is dequantised to ``dtype`` (the compute dtype) first; ``peft_model`` is
    consumed by a plain merge, so call this last.
    """
    if is_quantized(peft_model):
        import torch

        peft_model = dequantized_peft_model(peft_model, dtype or torch.float32)
    merged = peft_model.merge_and_unload()
    return merged
