"""What LoRA, DoRA and QLoRA hold in memory, for ``ftx plan`` (``memory_plan`` of their options, hookspecs 1.2).

Pure arithmetic on the model's shape: no torch, peft or bitsandbytes is imported. Only ``ftx plan``
(hookspecs 1.2) calls it, so this plugin still works with hookspecs 1.1.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftx_hookspecs import MemoryPlan, ModelShape

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ADAPTER_BYTES = 4
"""peft keeps adapter weights (and so their gradients and optimizer moments) in float32."""
WHOLE_MODULES = {"lm_head": "vocab", "embed_tokens": "vocab", "wte": "vocab", "score": "hidden"}
"""``modules_to_save`` names the plan can size: a trainable copy of the output head or embeddings, or a score head."""


def _regex_hit(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def targeted_layers(shape: ModelShape, targets: list[str] | str) -> list[tuple[str, int, int]]:
    """``(name, fan_in, fan_out)`` of one block's linear layers that get adapters.

    ``auto`` and ``all-linear`` adapt every linear layer of the block; a list names layers; a string
    is a regular expression matched against full module names (``model.layers.0.mlp.up_proj``).
    """
    names = targets if isinstance(targets, list) else [targets]
    chosen = []
    for layer, fan_in, fan_out in shape.linear_layers():
        full = shape.module_name(layer)
        if any(t in ("all-linear", "auto") or t == layer or _regex_hit(t, full) for t in names):
            chosen.append((layer, fan_in, fan_out))
    return chosen


def adapter_params(shape: ModelShape, options: Any) -> int:
    """Trainable parameters LoRA adds: ``r x (in + out)`` per adapted layer (plus ``out`` for DoRA's magnitude),
    and a trainable copy of each module in ``modules_to_save``."""
    per_block = sum(options.r * (fan_in + fan_out) + (fan_out if options.use_dora else 0)
                    for _, fan_in, fan_out in targeted_layers(shape, options.target_modules))
    added = per_block * shape.layers
    for module in options.modules_to_save:
        size = WHOLE_MODULES.get(module)
        added += shape.vocab * shape.hidden if size == "vocab" else shape.hidden if size == "hidden" else 0
    return added


def lora_plan(options: Any, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
    """A frozen base in the plan's dtype, adapters (float32) the only trainable parameters."""
    base = shape.total_params()
    added = adapter_params(shape, options)
    notes = plan.notes
    unsized = [m for m in options.modules_to_save if m not in WHOLE_MODULES]
    if unsized:
        note = f"method.modules_to_save: {', '.join(unsized)} not counted (the plan sizes {', '.join(WHOLE_MODULES)} only)"
        notes = (*notes, note)
    return replace(plan, total_params=base + added, trainable_params=added, trainable_bytes=ADAPTER_BYTES,
                   weight_bytes=base * DTYPE_BYTES.get(plan.dtype, 4) + added * ADAPTER_BYTES, adapters=True,
                   details=(*plan.details, "adapters" + (" with DoRA magnitudes" if options.use_dora else "")),
                   notes=notes)


def qlora_plan(options: Any, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
    """LoRA on a 4-bit base: linear weights at half a byte plus their quantisation constants, the rest upcast
    to float32 (``prepare_model_for_kbit_training``), activations in the compute dtype."""
    compute = options.compute_dtype
    if compute == "auto":
        compute = "bfloat16" if plan.device == "cuda" else "float32"
    plan = replace(plan, dtype=compute,
                   gradient_checkpointing=plan.gradient_checkpointing or options.gradient_checkpointing)
    plan = lora_plan(options, shape, plan)
    constants = (1 / 64 + 4 / (64 * 256)) if options.double_quant else 4 / 64  # bytes per weight
    added = plan.trainable_params
    weights = int(shape.linear_params() * (0.5 + constants)) + shape.other_params() * 4 + added * ADAPTER_BYTES
    details = (*plan.details, "4-bit base") + (("gradient checkpointing",) if options.gradient_checkpointing else ())
    return replace(plan, weight_bytes=weights, details=details)


def int8_plan(options: Any, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
    """LoRA on an 8-bit base: linear weights at one byte (their per-row scales are negligible), the rest upcast
    to float32 (``prepare_model_for_kbit_training``)."""
    compute = options.compute_dtype
    if compute == "auto":
        compute = "bfloat16" if plan.device == "cuda" else "float32"
    plan = replace(plan, dtype=compute,
                   gradient_checkpointing=plan.gradient_checkpointing or options.gradient_checkpointing)
    plan = lora_plan(options, shape, plan)
    added = plan.trainable_params
    weights = shape.linear_params() + shape.other_params() * 4 + added * ADAPTER_BYTES
    details = (*plan.details, "8-bit base") + (("gradient checkpointing",) if options.gradient_checkpointing else ())
    return replace(plan, weight_bytes=int(weights), details=details)
