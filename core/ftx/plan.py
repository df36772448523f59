"""``ftx plan``: will a recipe fit in memory? Answered from the model's config alone, before anything loads.

The estimate adds up what training holds at its peak:

* weights: every parameter in its dtype; 4-bit linear layers at half a byte plus their quantisation
  constants (QLoRA), the rest in the compute dtype;
* gradients and AdamW's two moments: for the trainable parameters only (all of them for ``full``,
  the adapters for ``lora``/``qlora``), in the trainable parameters' dtype (adapters are float32);
* activations kept for the backward pass at ``batch_size x max_length`` tokens (every example
  padded to ``max_length``, the worst case), or only each layer's input with gradient checkpointing;
  plus the logits and their gradient;
* on CPU, the resident memory of the Python process with torch and transformers imported.

It is an estimate, checked against measured peaks in ``tests/test_plan.py``; architectures other
than the usual decoder (Llama, Mistral, Qwen, GPT-2, ...) are counted as if they were one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GIB = 1024**3
MIB = 1024**2

RUNTIME_BYTES_CPU = 600 * MIB
"""Resident memory of a training process before the model loads (Python, torch, transformers, data)."""
CUDA_CONTEXT_BYTES = 600 * MIB
"""Memory the CUDA context and kernels take on a GPU beyond what torch allocates."""

GATED_ACTIVATIONS = ("silu", "swish", "swiglu", "geglu", "gelu_pytorch_tanh")
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """The numbers of a decoder-only transformer that decide its memory."""

    model_type: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    gated: bool
    experts: int = 1

    def linear_layers(self) -> list[tuple[str, int, int]]:
        """``(name, in, out)`` of the linear layers of one block, named as in Llama."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        layers = [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h)]
        if self.gated:
            layers += [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]
        else:
            layers += [("up_proj", h, i), ("down_proj", i, h)]
        return layers

    def linear_params(self) -> int:
        """Parameters in the blocks' linear layers (what 4-bit quantisation and LoRA act on)."""
        per_block = 0
        for name, fan_in, fan_out in self.linear_layers():
            per_block += fan_in * fan_out * (self.experts if name in ("gate_proj", "up_proj", "down_proj") else 1)
        return per_block * self.layers

    def other_params(self) -> int:
        """Embeddings, the output head (unless tied) and norms."""
        head = 0 if self.tied else self.vocab * self.hidden
        return self.vocab * self.hidden + head + self.layers * 2 * self.hidden + self.hidden

    def total_params(self) -> int:
        return self.linear_params() + self.other_params()


def shape_from_config(config: Mapping[str, Any]) -> Shape:
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
    gated = act in GATED_ACTIVATIONS or model_type in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2")
    return Shape(
        model_type=model_type,
        vocab=int(first("vocab_size", default=32000)),
        hidden=hidden,
        intermediate=int(first("intermediate_size", "n_inner", "ffn_dim", "hidden_dim", default=4 * hidden) or 4 * hidden),
        layers=int(first("num_hidden_layers", "n_layer", "num_layers", "n_layers")),
        heads=heads,
        kv_heads=int(first("num_key_value_heads", "num_kv_heads", default=heads) or heads),
        head_dim=int(first("head_dim", default=hidden // heads) or hidden // heads),
        tied=bool(first("tie_word_embeddings", default=True)),
        gated=gated,
        experts=int(first("num_local_experts", "num_experts", default=1) or 1),
    )


def model_shape(section: Mapping[str, Any]) -> Shape:
    """The shape of ``[model]``: a built-in's config (without building it), a local folder, or a hub id."""
    name = str(section["name"])
    if name.startswith("builtin:"):
        from .models.tiny import VOCAB_SIZE, model_config

        return shape_from_config({**model_config(name.removeprefix("builtin:"), section.get("config") or {}),
                                  "vocab_size": VOCAB_SIZE, "model_type": "llama", "hidden_act": "silu"})
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return shape_from_config(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name, revision=section.get("revision"),
                                        trust_remote_code=bool(section.get("trust_remote_code")))
    return shape_from_config(config.to_dict())


@dataclass(frozen=True)
class Setup:
    """What the recipe asks for, reduced to what decides memory; knobs are changes to it."""

    method: str = "full"
    r: int = 16
    targets: tuple[str, ...] = LLAMA_LINEAR
    dora: bool = False
    saved_modules: tuple[str, ...] = ()
    quant_bits: int = 16
    double_quant: bool = True
    dtype: str = "float32"
    batch_size: int = 8
    max_length: int = 512
    checkpointing: bool = False
    optimizer: str = "adamw_torch"
    device: str = "cpu"
    chunked_loss: bool = False
    """The loss is computed in chunks from the hidden states (Liger's fused linear cross-entropy): no full logits."""


@dataclass
class Estimate:
    """Parameters and bytes at the peak of training, by what holds them."""

    setup: Setup
    total_params: int
    trainable_params: int
    bytes: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "setup": dataclasses.asdict(self.setup),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "bytes": dict(self.bytes),
            "total_bytes": self.total_bytes,
        }


def _targeted(shape: Shape, targets: tuple[str, ...]) -> list[tuple[str, int, int]]:
    chosen = []
    for name, fan_in, fan_out in shape.linear_layers():
        full = f"model.layers.0.{'self_attn' if name in LLAMA_LINEAR[:4] else 'mlp'}.{name}"
        for target in targets:
            if target in ("all-linear", "auto") or name == target or _regex_hit(target, full):
                chosen.append((name, fan_in, fan_out))
                break
    return chosen


def _regex_hit(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def estimate(shape: Shape, setup: Setup) -> Estimate:
    """Bytes for weights, gradients, optimizer states, activations and runtime under ``setup``."""
    elt = DTYPE_BYTES.get(setup.dtype, 4)
    linear, other = shape.linear_params(), shape.other_params()
    total = linear + other
    out: dict[str, int] = {}
    if setup.method == "full":
        trainable = total
        out["weights"] = total * elt
        train_elt = elt
    else:
        adapted = _targeted(shape, setup.targets)
        per_block = sum(setup.r * (fan_in + fan_out) + (fan_out if setup.dora else 0) for _, fan_in, fan_out in adapted)
        trainable = per_block * shape.layers
        for module in setup.saved_modules:
            if module in ("lm_head", "embed_tokens", "wte", "score"):
                trainable += shape.vocab * shape.hidden if module != "score" else shape.hidden
        total += trainable
        train_elt = 4  # peft keeps adapters in float32
        if setup.quant_bits == 4:
            block_consts = (1 / 64 + 4 / (64 * 256)) if setup.double_quant else 4 / 64
            out["weights"] = int(linear * (0.5 + block_consts)) + other * 4  # the rest is upcast to fp32
        else:
            out["weights"] = total * elt - trainable * elt
        out["weights"] += trainable * train_elt
    optimizer_elt = 1 if "8bit" in setup.optimizer else train_elt
    out["gradients"] = trainable * train_elt
    out["optimizer"] = 2 * trainable * optimizer_elt
    out["activations"] = activation_bytes(shape, setup)
    out["runtime"] = RUNTIME_BYTES_CPU if setup.device == "cpu" else 0
    return Estimate(setup, total, trainable, out)


def activation_bytes(shape: Shape, setup: Setup) -> int:
    """Activations saved for backward at ``batch_size x max_length`` tokens, plus logits and their gradient.

    Per token and block, a Llama-style block keeps about 10 hidden-sized and 4 intermediate-sized
    vectors (norm inputs, q/k/v, attention output, MLP gate/up/product, and dropout/residual copies);
    with checkpointing it keeps one hidden-sized input per block and one block's worth at a time.
    """
    elt = 4 if setup.quant_bits == 4 and setup.dtype == "float32" else DTYPE_BYTES.get(setup.dtype, 4)
    tokens = setup.batch_size * setup.max_length
    kv = shape.kv_heads * shape.head_dim
    per_block = 8 * shape.hidden + 2 * kv + (4 if shape.gated else 2) * shape.intermediate
    attention = setup.batch_size * shape.heads * setup.max_length**2 if setup.device == "cpu" else 0
    if setup.checkpointing:
        kept = tokens * shape.hidden * shape.layers + tokens * per_block + attention
    else:
        kept = (tokens * per_block + attention) * shape.layers
    logits = 0 if setup.chunked_loss else tokens * shape.vocab * 3  # logits, their float32 copy, the gradient
    return int(kept * elt + logits * 4)


def setup_from_recipe(recipe: Any, device: str) -> tuple[Setup, list[str]]:
    """The :class:`Setup` of a validated recipe, and notes on what the estimate assumes."""
    notes: list[str] = []
    method = recipe.method.name
    opts = recipe.method.options
    dtype = recipe.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "batch_size": recipe.train.batch_size,
        "max_length": recipe.data.max_length,
        "checkpointing": recipe.train.gradient_checkpointing,
        "optimizer": recipe.train.optimizer,
        "device": device,
    }
    if method in ("lora", "dora", "qlora"):
        targets = opts.target_modules
        kwargs.update(
            method="lora",
            r=opts.r,
            targets=tuple(targets) if isinstance(targets, list) else (targets,),
            dora=bool(opts.use_dora),
            saved_modules=tuple(opts.modules_to_save),
        )
        if method == "qlora":
            compute = opts.compute_dtype
            if compute == "auto":
                compute = "bfloat16" if device == "cuda" else "float32"
            kwargs.update(quant_bits=4, double_quant=opts.double_quant, dtype=compute,
                          checkpointing=opts.gradient_checkpointing or recipe.train.gradient_checkpointing)
    elif method != "full":
        notes.append(f"method {method!r} is not known to plan: estimated as full fine-tuning")
    for kernel in getattr(recipe, "kernels", []):
        if kernel.name == "liger" and getattr(kernel.options, "fused_linear_cross_entropy", False):
            kwargs["chunked_loss"] = True
            notes.append("kernels 'liger': the loss is computed in chunks, so the full logits are never held")
    if recipe.objective.name in ("dpo",) and method == "full":
        notes.append("dpo with full fine-tuning also holds a frozen reference model: add one copy of the weights")
    return Setup(**kwargs), notes


def device_memory(device: str) -> tuple[str, int]:
    """``(description, bytes)`` of the memory training would use: the GPU's, else the machine's RAM."""
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / GIB:.1f} GiB)", int(props.total_memory) - CUDA_CONTEXT_BYTES
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"CPU RAM ({total / GIB:.1f} GiB)", int(total)


def pick_device(requested: str) -> str:
    """The device a run would use: the recipe's, or CUDA when torch sees one."""
    if requested != "auto":
        return "cpu" if requested == "mps" else requested
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


KNOBS: list[tuple[str, dict[str, Any]]] = [
    ("train.gradient_checkpointing = true", {"checkpointing": True}),
    ("halve train.batch_size (double train.grad_accum to keep the effective batch)", {"batch_size": 0.5}),
    ("halve data.max_length", {"max_length": 0.5}),
    ("train.optimizer = \"adamw_bnb_8bit\" (8-bit Adam moments)", {"optimizer": "adamw_bnb_8bit"}),
    ("model.dtype = \"bfloat16\"", {"dtype": "bfloat16"}),
    ("[method] use = \"lora\" (train adapters only)", {"method": "lora"}),
    ("[method] use = \"qlora\" (4-bit base, adapters, checkpointing)", {"method": "lora", "quant_bits": 4,
                                                                       "checkpointing": True}),
]


def _changed(setup: Setup, change: Mapping[str, Any]) -> Setup:
    values = {}
    for key, value in change.items():
        current = getattr(setup, key)
        values[key] = max(1, int(current * value)) if isinstance(value, float) else value
    return replace(setup, **values)


def _applicable(setup: Setup, change: Mapping[str, Any]) -> bool:
    new = _changed(setup, change)
    if new == setup:
        return False
    if setup.quant_bits == 4 and "quant_bits" not in change and change.get("method") == "lora":
        return False
    return not (change.get("dtype") == "bfloat16" and setup.device == "cpu")


def knobs(shape: Shape, setup: Setup, budget: int) -> list[tuple[str, int, bool]]:
    """Each change that would lower the estimate: ``(what to set, new total bytes, fits)``, best first.

    When no single change fits, a last row combines changes (largest saving first) until it fits.
    """
    base = estimate(shape, setup).total_bytes
    rows = []
    for text, change in KNOBS:
        if not _applicable(setup, change):
            continue
        new = estimate(shape, _changed(setup, change)).total_bytes
        if new < base:
            rows.append((text, new, new <= budget))
    rows.sort(key=lambda row: row[1])
    if base > budget and rows and not any(fits for _, _, fits in rows):
        current, chosen, total = setup, [], base
        for _ in range(len(KNOBS)):
            options = [(estimate(shape, _changed(current, c)).total_bytes, t, c)
                       for t, c in KNOBS if t not in chosen and _applicable(current, c)]
            options = [o for o in options if o[0] < total]
            if not options:
                break
            total, text, change = min(options, key=lambda o: o[0])
            current = _changed(current, change)
            chosen.append(text)
            if total <= budget:
                break
        if len(chosen) > 1:
            rows.append(("all of: " + "; ".join(chosen), total, total <= budget))
    return rows


def format_bytes(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def plan_report(recipe: Any, device: str | None = None, memory: int | None = None) -> dict[str, Any]:
    """Everything ``ftx plan`` prints, as data: shape, estimate, budget, verdict, knobs, notes."""
    device = device or pick_device(recipe.train.device)
    shape = model_shape(recipe.to_dict()["model"])
    setup, notes = setup_from_recipe(recipe, device)
    est = estimate(shape, setup)
    label, budget = device_memory(device) if memory is None else (f"given ({format_bytes(memory)})", memory)
    return {
        "model": recipe.model.name,
        "shape": dataclasses.asdict(shape),
        "device": device,
        "memory": label,
        "budget_bytes": budget,
        "estimate": est.as_dict(),
        "fits": est.total_bytes <= budget,
        "knobs": [{"set": t, "total_bytes": b, "fits": f} for t, b, f in knobs(shape, setup, budget)],
        "notes": notes,
    }


def format_report(report: Mapping[str, Any]) -> str:
    """The human-readable plan."""
    est = report["estimate"]
    setup = est["setup"]
    lines = [
        f"model: {report['model']} ({report['shape']['model_type']}, {report['shape']['layers']} layers, "
        f"hidden {report['shape']['hidden']}, vocab {report['shape']['vocab']})",
        f"parameters: {est['total_params']:,} total, {est['trainable_params']:,} trainable "
        f"({setup['method']}{', 4-bit base' if setup['quant_bits'] == 4 else ''}, {setup['dtype']})",
        f"at batch {setup['batch_size']} x {setup['max_length']} tokens"
        f"{', gradient checkpointing' if setup['checkpointing'] else ''} on {report['device']}:",
    ]
    for key, value in est["bytes"].items():
        lines.append(f"  {key:<12} {format_bytes(value):>12}")
    lines.append(f"  {'total':<12} {format_bytes(est['total_bytes']):>12}   vs {report['memory']}")
    verdict = "fits" if report["fits"] else "does NOT fit"
    lines.append(f"verdict: {verdict} ({100 * est['total_bytes'] / max(report['budget_bytes'], 1):.0f}% of the memory)")
    if report["knobs"]:
        lines.append("knobs that lower it:" if report["fits"] else "knobs that would make it fit:")
        shown = report["knobs"] if report["fits"] else [k for k in report["knobs"] if k["fits"]] or report["knobs"]
        for knob in shown[:8]:
            mark = "fits" if knob["fits"] else "still too big"
            lines.append(f"  {knob['set']}\n      -> {format_bytes(knob['total_bytes'])} ({mark})")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
