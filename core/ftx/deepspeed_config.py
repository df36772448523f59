"""The DeepSpeed config of ``[distributed] strategy = "deepspeed"``: built from the recipe's keys, or read from
the user's own file; checked without importing torch or deepspeed (``ftx validate``).

The config leaves batch sizes, accumulation, clipping, precision and the optimizer's settings to
transformers (``"auto"``), which fills them from the ``TrainingArguments`` ftx built from ``[train]``,
so the two can never disagree. Rank 0 writes the config it trained with into the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .recipe.schema import DistributedSection

_ON_CPU = {"device": "cpu", "pin_memory": True}


def build_config(section: DistributedSection) -> dict[str, Any]:
    """The DeepSpeed config for ``section``'s ``zero_stage``, ``offload_optimizer`` and ``offload_params``."""
    zero: dict[str, Any] = {
        "stage": section.zero_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if section.zero_stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            # the saved model is one consolidated folder: rank 0 gets the full 16-bit weights at the end
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    if section.offload_optimizer:
        zero["offload_optimizer"] = dict(_ON_CPU)
    if section.offload_params:
        zero["offload_param"] = dict(_ON_CPU)
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }
    if section.offload_optimizer:
        # an optimizer whose state lives on the CPU should step there too: DeepSpeed's CPU Adam
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    return config


def read_config(path: str | Path) -> dict[str, Any]:
    """A user's DeepSpeed config file as a dict; ``ValueError`` naming the file when it is not a JSON object."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):  # a ValueError like the others: the loader reports each as a recipe problem
        message = f"{path} holds a JSON {type(config).__name__}, not a DeepSpeed config object"
        raise ValueError(message)  # noqa: TRY004
    return config


def zero_stage(config: dict[str, Any]) -> int:
    """The ZeRO stage a config asks for (0 when it has none, -1 when it is not a number)."""
    zero = config.get("zero_optimization") or {}
    try:
        return int(zero.get("stage", 0)) if isinstance(zero, dict) else -1
    except (TypeError, ValueError):
        return -1


def effective_config(section: DistributedSection) -> dict[str, Any]:
    """The config a run trains with: the user's file when ``deepspeed`` names one, else :func:`build_config`."""
    return read_config(section.deepspeed) if section.deepspeed else build_config(section)
