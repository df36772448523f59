"""Load the recipe's tokenizer and model: built-in, local folder or hub id, with the right head and dtype."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from ..errors import RecipeError, RunError
from ..recipe.schema import ModelSection
from .gguf import gguf_folder, is_gguf
from .templates import apply_chat_template_choice


def resolve_model_path(section: ModelSection, echo: Callable[[str], None] | None = None) -> str:
    """A local folder for built-in models and GGUF files (built or converted once, then cached in ``$FTX_HOME``);
    hub ids and folders unchanged."""
    if is_gguf(section.name):
        if section.config or section.pretrain_steps:
            raise RecipeError("model.config / model.pretrain_steps: apply to built-in models only; remove them")
        return str(gguf_folder(section.name, echo=echo))
    if section.name.startswith("builtin:"):
        from .tiny import ensure_builtin

        return str(ensure_builtin(section.name, section.config, section.pretrain_steps, echo=echo))
    if section.config:
        raise RecipeError("model.config: overrides apply to built-in models only; remove the table")
    if section.pretrain_steps:
        raise RecipeError("model.pretrain_steps: applies to built-in models only; remove the key")
    return section.name


def check_remote_code(section: ModelSection, allowed_on_command_line: bool) -> None:
    """``trust_remote_code`` needs both the recipe's key and ``--trust-remote-code`` on the command line."""
    if section.trust_remote_code and not allowed_on_command_line:
        raise RecipeError(
            "model.trust_remote_code = true runs code from the model repository; "
            "pass --trust-remote-code on the command line as well to allow it"
        )


def load_tokenizer(section: ModelSection, model_path: str) -> Any:
    """The tokenizer with a pad token and the chat template the recipe asks for."""
    from transformers import AutoTokenizer

    source = section.tokenizer or model_path
    if is_gguf(source):
        source = str(gguf_folder(source))
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=section.revision, trust_remote_code=section.trust_remote_code
        )
    except Exception as exc:
        damaged = damaged_weights(str(source))
        if damaged is not None:
            raise RunError(f"this model file is damaged: {damaged}; copy or save the model again") from exc
        if not isinstance(exc, (OSError, ValueError)):
            raise
        raise RunError(f"cannot load the tokenizer of {source!r} (model.name / model.tokenizer): {exc}") from exc
    apply_chat_template_choice(tokenizer, section.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def resolve_dtype(name: str, device: str) -> Any:
    """Map the recipe's dtype to torch's; ``auto`` is bfloat16 on a GPU that supports it, else float32."""
    import torch

    if name == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def class_labels(recipe: Any, data: Any) -> list[str] | None:
    """The label names of a classification run, in the order of the head's outputs: the format's declared
    ``labels`` when it has them, else every label seen in the data, sorted; ``None`` for other data."""
    from ftx_hookspecs import ClassificationExample

    examples = [*getattr(data, "train", []), *getattr(data, "eval", [])]
    seen = [e.label for e in examples if isinstance(e, ClassificationExample)]
    if not seen:
        return None
    declared = list(getattr(recipe.data_format.options, "labels", None) or [])
    return declared or sorted(set(seen))


def _is_classifier(model_path: str) -> bool:
    """True when a model folder already holds a sequence classifier (its head's size is in its config)."""
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return False
    import json

    architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    return any(str(a).endswith("ForSequenceClassification") for a in architectures)


@contextlib.contextmanager
def _quiet_new_head(active: bool) -> Iterator[None]:
    """Silence transformers' load report while a classifier head is created on a base model: its "score.weight
    MISSING, newly initialized" is the intended new head, not a problem with the checkpoint."""
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    if active:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_model(
    section: ModelSection, model_path: str, *, head: str, device: str, tokenizer: Any, extra: dict[str, Any],
    labels: list[str] | None = None,
) -> Any:
    """Load the model with the objective's head; ``extra`` comes from the method (e.g. quantization).

    A sequence-classification head gets one output per name in ``labels`` (with ``id2label``), or one
    output (a reward model) without them, unless the folder already holds a trained classifier.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {
        "revision": section.revision,
        "trust_remote_code": section.trust_remote_code,
        "dtype": resolve_dtype(section.dtype, device),
    }
    kwargs.update(extra)
    if head == "sequence-classification":
        cls: Any = AutoModelForSequenceClassification
        new_head = not _is_classifier(model_path)
        if labels:
            kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={name: i for i, name in enumerate(labels)})
        elif new_head:
            kwargs.setdefault("num_labels", 1)
    elif head == "causal-lm":
        cls = AutoModelForCausalLM
    else:
        raise RunError(f"unknown model head {head!r} requested by the objective")
    try:
        with _quiet_new_head(head == "sequence-classification" and new_head):
            model = cls.from_pretrained(model_path, **kwargs)
    except Exception as exc:
        damaged = damaged_weights(model_path)
        if damaged is not None:
            raise RunError(f"this model file is damaged: {damaged}; copy or save the model again") from exc
        if isinstance(exc, (OSError, ValueError)):
            raise RunError(f"cannot load model {section.name!r}: {exc}") from exc
        raise
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if "quantization_config" not in extra and "device_map" not in extra:
        model.to(device)
    return model


def damaged_weights(model_path: str) -> Path | None:
    """The first file of a local model folder that is damaged, else None: a ``*.json`` (config, tokenizer) that
    does not parse, or a ``*.safetensors`` whose header or size does not hold up."""
    folder = Path(model_path)
    if not folder.is_dir():
        return None
    import json
    import struct

    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return path

    for path in sorted(folder.glob("*.safetensors")):
        try:
            size = path.stat().st_size
            with open(path, "rb") as handle:
                (header_len,) = struct.unpack("<Q", handle.read(8))
                if header_len > size - 8:
                    return path
                header = json.loads(handle.read(header_len))
            ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
            if 8 + header_len + max(ends, default=0) > size:
                return path
        except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError):
            return path
    return None


def is_local(path: str) -> bool:
    """True for a folder on disk (as opposed to a hub id)."""
    return Path(path).exists()
