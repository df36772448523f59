"""Which modules get adapters: per-architecture defaults, and checks that name real modules.

A misspelled target would otherwise make peft fail with a bare "target modules not found" (or,
for a regex, silently adapt nothing); here it fails before training, listing what the model has.
"""

from __future__ import annotations

import re
from typing import Any

from ftx.errors import RecipeError

DEFAULT_TARGETS: dict[str, list[str]] = {
    **{
        model_type: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        for model_type in (
            "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
            "gemma3_text", "olmo", "olmo2", "granite", "smollm3", "cohere", "starcoder2", "deepseek_v2",
        )
    },
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
}
"""Attention and MLP projections per ``config.model_type``: the QLoRA paper's advice (all of them)."""


def linear_module_names(model: Any) -> list[str]:
    """Full names of the model's linear layers (``nn.Linear``, bitsandbytes layers, GPT-2's ``Conv1D``)."""
    import torch

    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            names.append(name)
    return names


def short_names(names: list[str]) -> list[str]:
    """The distinct last components (``q_proj``, ``lm_head``, ...), in first-seen order."""
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name.rsplit(".", 1)[-1], None)
    return list(seen)


def _matches(name: str, target: str) -> bool:
    """peft's rule for a listed name: the whole module name, or its dotted suffix."""
    return name == target or name.endswith("." + target)


def resolve_targets(target_modules: list[str] | str, model: Any, key: str = "method.target_modules") -> list[str] | str:
    """The ``target_modules`` to hand peft, after checking that every name or the regex matches a module."""
    linear = linear_module_names(model)
    available = ", ".join(short_names(linear)) or "(none)"
    if target_modules == "auto":
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        defaults = DEFAULT_TARGETS.get(model_type or "")
        if defaults and all(any(_matches(n, t) for n in linear) for t in defaults):
            return list(defaults)
        target_modules = "all-linear"
    if target_modules == "all-linear":
        if not linear:
            raise RecipeError(f"{key}: the model has no linear layers to adapt")
        return "all-linear"
    modules = dict(model.named_modules())
    names = list(modules)
    if isinstance(target_modules, list):
        missing = [t for t in target_modules if not any(_matches(n, t) for n in names)]
        if missing:
            raise RecipeError(
                f"{key}: no module named {', '.join(repr(m) for m in missing)} in this model; "
                f"its linear modules are: {available} (or use 'all-linear')"
            )
        matched = [n for n in names if any(_matches(n, t) for t in target_modules)]
    else:
        pattern = re.compile(target_modules)
        matched = [n for n in names if pattern.fullmatch(n)]
        if not matched:
            raise RecipeError(
                f"{key}: the regular expression {target_modules!r} matches no module name (it must match a full "
                f"name such as {linear[0]!r}); the linear modules are: {available}"
                if linear else f"{key}: the regular expression {target_modules!r} matches no module name"
            )
    unsupported = [n for n in matched if not _adaptable(modules[n])]
    if unsupported:
        example = unsupported[0]
        raise RecipeError(
            f"{key}: {target_modules!r} also selects {example!r} ({type(modules[example]).__name__}"
            f"{f' and {len(unsupported) - 1} more' if len(unsupported) > 1 else ''}), which LoRA cannot adapt; "
            f"select linear modules only: {available}"
        )
    return list(target_modules) if isinstance(target_modules, list) else target_modules


def _adaptable(module: Any) -> bool:
    """Layers peft's LoRA can wrap: linear (incl. bitsandbytes), embedding, convolution, GPT-2's Conv1D."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
             torch.nn.MultiheadAttention)
    return isinstance(module, kinds) or type(module).__name__ == "Conv1D"


def check_modules_to_save(modules: list[str], model: Any, key: str = "method.modules_to_save") -> None:
    """Every name in ``modules_to_save`` must be a module of the model."""
    names = [name for name, _ in model.named_modules()]
    missing = [m for m in modules if not any(_matches(n, m) for n in names)]
    if missing:
        top = short_names([n for n in names if n and n.count(".") <= 1])
        raise RecipeError(
            f"{key}: no module named {', '.join(repr(m) for m in missing)} in this model; "
            f"top-level modules are: {', '.join(top)}"
        )


def task_type(model: Any) -> str:
    """peft's task type for the model's head: sequence classification keeps its new head trainable."""
    return "SEQ_CLS" if type(model).__name__.endswith("ForSequenceClassification") else "CAUSAL_LM"
