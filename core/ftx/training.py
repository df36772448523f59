"""Helpers objectives share: device choice, ``TrainingArguments`` from ``[train]``, logging callback, collator.

Objectives train on transformers' ``Trainer`` (or TRL's trainers built on it); these helpers keep
the mapping from the recipe to those libraries in one place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ftx_hookspecs import RunContext

from .recipe.schema import TrainSection

QUIET_LOGGERS = ("bitsandbytes.backends.cpu.ops",)


def quiet_libraries() -> None:
    """Silence start-up warnings of libraries that do not concern the user, and any telemetry."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def choose_device(train: TrainSection) -> str:
    """The run's device: ``[train] device``, with ``auto`` resolved by :func:`ftx.device.resolve_device`."""
    from .device import resolve_device

    return resolve_device(train.device)


def optimizer_name(choice: str, device: str) -> str:
    """The transformers ``optim`` for ``[train] optimizer``: ``auto`` is torch's fused AdamW on CUDA and CPU
    (one kernel over all parameters instead of a Python loop of small ones: 3.4 vs 9.6 ms a step for a
    10M-parameter model on 2 CPU cores), and the plain implementation elsewhere (MPS)."""
    if choice != "auto":
        return choice
    return "adamw_torch_fused" if device in ("cuda", "cpu") else "adamw_torch"


def training_arguments(ctx: RunContext, config_class: Any = None, **overrides: Any) -> Any:
    """``transformers.TrainingArguments`` from the recipe's ``[train]`` table; ``overrides`` win.

    ``config_class`` builds a subclass instead (TRL's ``DPOConfig``, ``GRPOConfig``, ...); mixed
    precision is then set explicitly, since TRL's configs default ``bf16`` to on.
    """
    from transformers import TrainingArguments

    cls = config_class or TrainingArguments
    train: TrainSection = ctx.train
    has_eval = bool(getattr(ctx.data, "eval", None)) and train.eval_every is not None
    precision = mixed_precision(train.precision, ctx.recipe["model"].get("dtype", "auto"), ctx.device)
    kwargs: dict[str, Any] = {
        "output_dir": str(ctx.checkpoint_dir),
        "per_device_train_batch_size": train.batch_size,
        "per_device_eval_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "learning_rate": train.lr,
        "num_train_epochs": train.epochs,
        "max_steps": train.max_steps or -1,
        "lr_scheduler_type": train.scheduler,
        "warmup_steps": train.warmup_ratio,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "optim": optimizer_name(train.optimizer, ctx.device),
        "logging_steps": train.log_every,
        "logging_first_step": True,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": train.eval_every if has_eval else None,
        "save_strategy": "steps" if train.save_every else "no",
        "save_steps": train.save_every or 500,
        "save_only_model": False,
        "report_to": "none",
        "seed": train.seed,
        "data_seed": train.seed,
        "use_cpu": ctx.device == "cpu",
        _checkpointing_key(cls): train.gradient_checkpointing,
        "torch_compile": train.compile,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "disable_tqdm": not os.isatty(2) and not os.environ.get("FTX_PROGRESS"),
        **precision,
    }
    kwargs.update(_distributed_arguments(ctx))
    if kwargs.get("fsdp"):  # FSDP checkpoints activations itself (fsdp_config); transformers refuses both
        kwargs[_checkpointing_key(cls)] = False
    kwargs.update(_optimizer_options(train))
    if config_class is not None:
        kwargs.setdefault("bf16", False)
        kwargs.setdefault("fp16", False)
    kwargs.update(overrides)
    return cls(**kwargs)


def mixed_precision(choice: str, dtype: str, device: str) -> dict[str, bool]:
    """TrainingArguments' ``bf16``/``fp16`` for ``[train] precision``: autocast of the matmuls, the weights (and
    optimizer state) staying in ``model.dtype``. ``auto`` keeps what the weights suggest on a GPU and fp32 on a CPU."""
    import torch

    from .errors import Problem, RecipeError

    if choice == "auto":
        if device != "cuda":
            return {}
        if dtype in ("auto", "bfloat16") and torch.cuda.is_bf16_supported():
            return {"bf16": True}
        return {"fp16": True} if dtype == "float16" else {}
    if choice == "fp32":
        return {"bf16": False, "fp16": False}
    if choice == "fp16" and device != "cuda":
        raise RecipeError(Problem("train.precision", f"'fp16' needs a CUDA GPU (this run is on {device}): use 'bf16' "
                                  "or 'fp32'"))
    if choice == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise RecipeError(Problem("train.precision", "'bf16': this GPU has no bf16 support; use 'fp16' or 'fp32'"))
    if choice == "bf16" and device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        logging.getLogger("ftx").warning("train.precision = 'bf16' on a CPU without bf16 units: expect it slower than fp32")
    return {choice: True}


def _optimizer_options(train: TrainSection) -> dict[str, Any]:
    """``optim_target_modules`` (GaLore, APOLLO; default all linear layers) and ``optim_args`` from ``[train]``."""
    from .recipe.schema import PROJECTED_OPTIMIZERS

    out: dict[str, Any] = {}
    if any(train.optimizer.startswith(prefix) for prefix in PROJECTED_OPTIMIZERS):
        out["optim_target_modules"] = train.optimizer_target_modules or "all-linear"
    if train.optimizer_args:
        out["optim_args"] = ",".join(f"{k}={v}" for k, v in train.optimizer_args.items())
    return out


def _distributed_arguments(ctx: RunContext) -> dict[str, Any]:
    """``[distributed]`` mapped onto TrainingArguments when the run was started by torch's launcher.

    ``fsdp``: FSDP2 through accelerate (see :mod:`ftx.sharded`), each decoder layer its own unit, sharded
    checkpoints; ``deepspeed``: the config of :mod:`ftx.deepspeed_config`, which rank 0 also writes into the
    run folder. Activation checkpointing under FSDP is FSDP's own (transformers refuses both at once).
    """
    from .distributed import launched
    from .recipe.schema import DistributedSection

    if not launched():
        return {}
    section = DistributedSection.model_validate(ctx.recipe.get("distributed") or {})
    backend = section.backend
    out: dict[str, Any] = {"ddp_backend": ("nccl" if ctx.device == "cuda" else "gloo") if backend == "auto" else backend}
    if section.strategy == "fsdp":
        checkpointing = section.activation_checkpointing or ctx.train.gradient_checkpointing
        out["fsdp"] = True
        out["fsdp_config"] = fsdp_config(section, checkpointing)
    elif section.strategy == "deepspeed":
        out["deepspeed"] = _deepspeed_config(ctx, section)
    return out


def fsdp_config(section: Any, activation_checkpointing: bool) -> dict[str, Any]:
    """transformers' ``fsdp_config`` for ``[distributed] strategy = "fsdp"``: FSDP2, every decoder layer (the
    model's ``_no_split_modules``) its own unit, sharded checkpoints while training."""
    return {
        "version": section.fsdp_version,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "state_dict_type": "SHARDED_STATE_DICT",
        "reshard_after_forward": section.reshard_after_forward,
        "cpu_offload": section.cpu_offload,
        "activation_checkpointing": activation_checkpointing,
    }


def _deepspeed_config(ctx: RunContext, section: Any) -> dict[str, Any]:
    """The DeepSpeed config (a dict: every rank builds its own, no file needs to reach other machines);
    rank 0 writes it into the run folder. DeepSpeed needs CUDA, and says so here rather than deep in accelerate."""
    import json

    from .deepspeed_config import effective_config
    from .distributed import is_main
    from .errors import Problem, RecipeError
    from .layout import DEEPSPEED

    if ctx.device != "cuda":
        raise RecipeError(Problem("distributed.strategy", f"DeepSpeed trains on CUDA GPUs only, and this run is on "
                                  f"{ctx.device}: use strategy = 'fsdp' (CPU or GPU) or 'ddp'"))
    config = effective_config(section)
    if is_main():
        from .rundir import write_text_atomic

        write_text_atomic(ctx.run_dir / DEEPSPEED, json.dumps(config, indent=2) + "\n")
    return config


def _checkpointing_key(cls: Any) -> str:
    """transformers 5 renames ``gradient_checkpointing`` to ``activation_checkpointing``."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return "activation_checkpointing" if "activation_checkpointing" in params else "gradient_checkpointing"


def quiet_trainer(trainer: Any) -> Any:
    """Drop Trainer's own printing of log dicts; ftx's console plugin prints them."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def make_log_callback(ctx: RunContext, history: list[dict[str, float]]) -> Any:
    """A ``TrainerCallback`` that forwards logs to ``ctx.log_metrics`` (keeping the history) and announces checkpoints."""
    from transformers import TrainerCallback

    class ForwardLogs(TrainerCallback):  # type: ignore[misc]
        ftx_role = "logs"

        def __init__(self) -> None:
            self.history = history

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            numeric = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and k != "epoch"}
            numeric = {k.replace("learning_rate", "lr"): v for k, v in numeric.items()}
            if "epoch" in logs:
                numeric["epoch"] = float(logs["epoch"])
            history.append({"step": float(state.global_step), **numeric})
            ctx.log_metrics(numeric, state.global_step)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            from pathlib import Path

            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                ctx.checkpoint_saved(path, state.global_step)

    return ForwardLogs()


@dataclass
class CausalLMCollator:
    """Pads ``input_ids`` and ``labels`` to the longest in the batch (right padding)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), -100, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(feature["labels"], dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pack_rows(lengths: Sequence[int], capacity: int | None) -> list[list[int]]:
    """Indices of examples grouped into rows of at most ``capacity`` tokens (first-fit decreasing).

    ``None`` puts everything in one row. An example longer than ``capacity`` gets a row of its own.
    """
    if capacity is None:
        return [list(range(len(lengths)))]
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[index]
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(index)
                room[r] -= n
                break
        else:
            rows.append([index])
            room.append(capacity - n)
    return [sorted(row) for row in rows]


@dataclass
class PackedCollator:
    """Packs a batch's examples into as few rows as fit, with no padding inside a row.

    A row holds at most as many tokens as the batch's longest example (and never more than
    ``max_length``), so a packed batch never computes more than the padded one: fewer rows of the
    same width. On kernels that attend over a whole row under a mask (CPU sdpa and eager), wider
    rows would cost more attention than they save in padding.

    ``position_ids`` restart at 0 for every example and no ``attention_mask`` is returned:
    transformers then builds a block-diagonal causal mask from the restarts (sdpa, eager and
    flex attention; flash-attention reads the same boundaries), so no example attends to another.
    That detection needs the model to run without a KV cache, as ``Trainer`` arranges
    (``use_cache=False``). The first label of each example is ignored, so no loss crosses a
    boundary either. The loss equals the padded batch's (same examples, same trained tokens);
    only the padding's compute is gone. Rows shorter than the widest are filled with
    ``pad_token_id`` under label ``-100`` as a separate sequence.
    """

    max_length: int | None = None
    pad_token_id: int = 0

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        capacity = min(max(lengths), self.max_length) if self.max_length else max(lengths)
        rows = pack_rows(lengths, capacity)
        width = max(sum(len(features[i]["input_ids"]) for i in row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for index in row:
                feature = features[index]
                n = len(feature["input_ids"])
                ids[r, at : at + n] = torch.tensor(feature["input_ids"], dtype=torch.long)
                labels[r, at + 1 : at + n] = torch.tensor(feature["labels"][1:], dtype=torch.long)
                positions[r, at : at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(width - at)
        return {"input_ids": ids, "labels": labels, "position_ids": positions}
