"""A model's :class:`~ftx_hookspecs.ModelShape` from its ``config.json``, whatever the field names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ftx_hookspecs import ModelShape

GATED_ACTIVATIONS = ("silu", "swish", "swiglu", "geglu", "gelu_pytorch_tanh")
GATED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2")


def shape_from_config(config: Mapping[str, Any]) -> ModelShape:
    """Read a ``config.json`` (Llama, Mistral, Qwen, Gemma, GPT-2, GPT-NeoX, ... field names)."""
    c = dict(config)
    if "text_config" in c and "hidden_size" not in c:
        c = {**c["text_config"], "model_type": c.get("model_type")}

    def first(*keys: str, default: Any = None) -> Any:
        for key in keys:
            if c.get(key) is not None:
                return c[key]
        return default

    hidden = int(first("hidden_size", "n_embd", "d_model", "dim"))
    heads = int(first("num_attention_heads", "n_head", "num_heads", "n_heads"))
    act = str(first("hidden_act", "activation_function", "hidden_activation", default="gelu")).lower()
    model_type = str(c.get("model_type") or "unknown")
    return ModelShape(
        model_type=model_type,
        vocab=int(first("vocab_size", default=32000)),
        hidden=hidden,
        intermediate=int(first("intermediate_size", "n_inner", "ffn_dim", "hidden_dim", default=4 * hidden) or 4 * hidden),
        layers=int(first("num_hidden_layers", "n_layer", "num_layers", "n_layers")),
        heads=heads,
        kv_heads=int(first("num_key_value_heads", "num_kv_heads", default=heads) or heads),
        head_dim=int(first("head_dim", default=hidden // heads) or hidden // heads),
        tied=bool(first("tie_word_embeddings", default=True)),
        gated=act in GATED_ACTIVATIONS or model_type in GATED_MODEL_TYPES,
        experts=int(first("num_local_experts", "num_experts", default=1) or 1),
    )
