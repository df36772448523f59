"""Write a Hugging Face Llama-family folder as one GGUF file (llama.cpp's format), f16 or q8_0.

The mapping is llama.cpp's documented layout for the ``llama`` architecture: hyper-parameters under
``llama.*``, the byte-level BPE vocabulary under ``tokenizer.ggml.*`` (tokens, types, merges, special
ids, the chat template), and tensors named ``token_embd`` / ``blk.N.attn_q`` / ... / ``output``. Query
and key projections are stored with their rows interleaved per head (GGUF's rotary layout), the inverse
of what GGUF readers undo on load. Norm weights stay float32; with ``q8_0`` every matrix whose rows
divide into 32-value blocks is quantised, the rest stay f16.

The file is written next to its final name and renamed into place by the caller only after it has
been read back and checked (:mod:`ftx_deploy.gguf_check`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftx.errors import RunError

Quant = Literal["f16", "q8_0"]
QUANTS: tuple[str, ...] = ("f16", "q8_0")
SUPPORTED = ("llama",)
"""Hugging Face ``model_type`` values this writer can describe (SmolLM2, Llama 2/3 without rope scaling, ...)."""

BLOCK = 32
"""Values per q8_0 block: a matrix is quantised only when its rows divide into blocks."""

_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


class GGUFExportError(RunError):
    """The model cannot be described as GGUF by this writer (architecture, tokenizer or options)."""

    exit_code = 2


@dataclass(frozen=True)
class Shape:
    """The hyper-parameters GGUF's ``llama`` architecture records."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    rms_eps: float
    rope_theta: float
    vocab: int
    tied: bool


def gguf_name(tensor: str) -> str | None:
    """The GGUF name of a Hugging Face Llama tensor, ``None`` for one the format has no place for."""
    if tensor in _TOP_NAMES:
        return _TOP_NAMES[tensor]
    match = _LAYER.match(tensor)
    if match and match.group(2) in _LAYER_NAMES:
        return f"blk.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    return None


def interleave_heads(weight: Any, heads: int) -> Any:
    """Rows of a query/key projection reordered per head from halves (``rotate_half``) to interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def model_shape(config: dict[str, Any]) -> Shape:
    """The GGUF hyper-parameters of a ``config.json``; a clear error for what the writer cannot describe."""
    kind = config.get("model_type")
    if kind not in SUPPORTED:
        raise GGUFExportError(f"--format gguf supports {', '.join(SUPPORTED)} models (Llama family: SmolLM2, Llama 2/3, "
                              f"TinyLlama...); this model is {kind!r}. Export the Hugging Face folder (without "
                              "--format gguf) and convert it with llama.cpp's convert_hf_to_gguf.py")
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise GGUFExportError(f"--format gguf: config.json sets {flag} = true, which this writer does not map")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type != "default":
        raise GGUFExportError(f"--format gguf: rope scaling {rope_type!r} is not supported by this writer (only plain "
                              "RoPE); convert the exported folder with llama.cpp instead")
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    return Shape(
        layers=int(config["num_hidden_layers"]), hidden=hidden, intermediate=int(config["intermediate_size"]),
        heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        context=int(config.get("max_position_embeddings") or 2048), rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0),
        vocab=int(config["vocab_size"]), tied=bool(config.get("tie_word_embeddings", False)),
    )


def read_tensors(folder: Path) -> Iterator[tuple[str, Any]]:
    """Every tensor of the folder's safetensors files as float32 numpy arrays, one at a time."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise GGUFExportError(f"{folder}: no safetensors weights to convert")
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                yield name, handle.get_tensor(name).float().numpy()


@dataclass(frozen=True)
class Vocabulary:
    """A byte-level BPE vocabulary as GGUF stores it."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    special: dict[str, int]
    add_bos: bool


def vocabulary(folder: Path, size: int, end_of_turn: int | None) -> Vocabulary:
    """The tokenizer of ``folder`` (``tokenizer.json``, byte-level BPE) laid out for GGUF, padded to ``size`` ids."""
    from transformers import AutoTokenizer

    file = folder / "tokenizer.json"
    if not file.is_file():
        raise GGUFExportError(f"--format gguf needs a fast tokenizer (tokenizer.json) in {folder}")
    spec = json.loads(file.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise GGUFExportError("--format gguf supports byte-level BPE tokenizers (GPT-2 style, as SmolLM2 and Llama 3 "
                              f"use); this tokenizer is {model.get('type')!r}. Convert the exported folder with llama.cpp")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    size = max(size, max(by_id) + 1)
    added = {t.content: t.special for t in tokenizer.added_tokens_decoder.values()}
    special_ids = set(tokenizer.all_special_ids)
    tokens: list[str] = []
    types: list[int] = []
    for index in range(size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(5)  # UNUSED: an embedding row no token names
        elif index in special_ids or added.get(token):
            tokens.append(token)
            types.append(3)  # CONTROL
        elif token in added:
            tokens.append(token)
            types.append(4)  # USER_DEFINED
        else:
            tokens.append(token)
            types.append(1)  # NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    special = {name: int(getattr(tokenizer, f"{name}_token_id")) for name in ("bos", "eos", "unk", "pad")
               if getattr(tokenizer, f"{name}_token_id", None) is not None}
    if end_of_turn is not None and end_of_turn != special.get("eos"):
        special["eot"] = int(end_of_turn)
    add_bos = bool(getattr(tokenizer, "add_bos_token", False))
    return Vocabulary(tokens, types, merges, special, add_bos)


def write_gguf(
    folder: Path, out: Path, *, quant: Quant, name: str, chat_template: str | None, pre_tokenizer: str = "gpt2",
    end_of_turn: int | None = None, echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the Llama-family model in ``folder`` to ``out``; returns what was written (for ``ftx_export.json``)."""
    import gguf
    import numpy as np

    if quant not in QUANTS:
        raise GGUFExportError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    shape = model_shape(config)
    vocab = vocabulary(folder, shape.vocab, end_of_turn)
    writer = gguf.GGUFWriter(str(out), "llama", use_temp_file=True)  # tensors spool to disk, not RAM
    writer.add_name(name)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_vocab_size(len(vocab.tokens))
    file_type = gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
              "pad": writer.add_pad_token_id, "eot": writer.add_eot_token_id}
    for key, token_id in vocab.special.items():
        adders[key](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    if chat_template:
        writer.add_chat_template(chat_template)

    counts = {"f32": 0, "f16": 0, "q8_0": 0}
    seen: set[str] = set()
    for hf_name, weight in read_tensors(folder):
        target = gguf_name(hf_name)
        if target is None:
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue  # recomputed from rope_theta by every reader
            raise GGUFExportError(f"--format gguf: tensor {hf_name!r} has no place in GGUF's llama layout")
        if target == "output.weight" and shape.tied:
            continue  # tied to token_embd: readers reuse it
        if target.endswith("attn_q.weight"):
            weight = interleave_heads(weight, shape.heads)
        elif target.endswith("attn_k.weight"):
            weight = interleave_heads(weight, shape.kv_heads)
        if weight.ndim == 1:
            writer.add_tensor(target, np.ascontiguousarray(weight, dtype=np.float32))
            counts["f32"] += 1
        elif quant == "q8_0" and weight.shape[-1] % BLOCK == 0:
            data = gguf.quants.quantize(np.ascontiguousarray(weight, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(target, data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            counts["q8_0"] += 1
        else:
            writer.add_tensor(target, np.ascontiguousarray(weight, dtype=np.float16))
            counts["f16"] += 1
        seen.add(target)
    expected = 2 + 9 * shape.layers + (0 if shape.tied else 1)
    if len(seen) != expected:
        raise GGUFExportError(f"--format gguf: {folder} holds {len(seen)} of the {expected} tensors a {shape.layers}-layer "
                              "Llama needs; the export is incomplete")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    echo(f"gguf: wrote {out.name} ({out.stat().st_size / 2**20:.1f} MiB; {counts['q8_0']} q8_0, {counts['f16']} f16, "
         f"{counts['f32']} f32 tensors)")
    return {"file": out.name, "quant": quant, "bytes": out.stat().st_size, "tensors": counts,
            "tokenizer_pre": pre_tokenizer, "vocab": len(vocab.tokens)}
