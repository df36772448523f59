"""Sharded training (FSDP2, DeepSpeed ZeRO) through transformers' Trainer and accelerate, and back to one model.

``[distributed] strategy = "fsdp"`` becomes transformers' ``fsdp=True`` with an ``fsdp_config``
(FSDP2, auto-wrap of the model's decoder layers, sharded checkpoints): accelerate's
``fsdp2_prepare_model`` shards the model with torch's ``fully_shard``, and its ``save_fsdp_model`` /
``load_fsdp_model`` write and read each checkpoint with torch.distributed.checkpoint, every rank its
own shards. ``strategy = "deepspeed"`` becomes a DeepSpeed config (:mod:`ftx.deepspeed_config`).

Why ftx touches accelerate's state: accelerate 1.15's ``AcceleratorState`` turns FSDP on only for
accelerator device types (``MULTI_GPU``, ``MULTI_NPU``, ``MULTI_XPU``, ...). A CPU run is
``MULTI_CPU``, so the FSDP plugin is dropped without a word and the Trainer wraps the model in DDP.
torch's FSDP2 runs on CPU with gloo, so :func:`enable_fsdp_on_cpu` puts the plugin back before the
Trainer prepares the model: CPU runs (and ftx's tests) then take the code path CUDA runs take.

After training, every rank joins :func:`consolidate`: accelerate gathers the full state dict on rank 0
(``Accelerator.get_state_dict``: FSDP2's full state dict, or ZeRO-3's 16-bit weights), which rank 0
loads into an unsharded copy of the model made on the meta device before training (no memory). Rank 0
then evaluates and saves that copy as an ordinary Hugging Face model (or adapter), with no collective
that a lone rank could wait in forever.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


def uses_sharding(trainer: Any) -> bool:
    """Whether ``trainer``'s arguments ask for FSDP or DeepSpeed (ftx sets them only under its launcher)."""
    args = trainer.args
    return bool(getattr(args, "fsdp_plugin_args", None)) or bool(getattr(args, "deepspeed", None))


def enable_fsdp_on_cpu(trainer: Any) -> None:
    """Give a CPU Trainer the FSDP plugin accelerate dropped (see the module's docstring); no-op elsewhere."""
    plugin_args = getattr(trainer.args, "fsdp_plugin_args", None)
    if not plugin_args or getattr(trainer, "is_fsdp_enabled", False):
        return
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**plugin_args)
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as AcceleratorState does on GPUs
    trainer.is_fsdp_enabled = True


def sync_from_rank0(model: Any) -> None:
    """Give every rank rank 0's parameters and buffers before FSDP shards them (a collective).

    DDP broadcasts rank 0's weights when it wraps a model; FSDP2 shards what each rank holds, so ranks whose
    weights differ (an adapter initialised after a different use of the random generator, a model cache one
    rank built and another read) would train a patchwork. FSDP1's ``sync_module_states`` did this."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def meta_copy(model: Any) -> Any:
    """An unsharded copy of ``model`` whose parameters are on the meta device (no memory) and whose buffers are
    cloned (the non-persistent ones, such as rotary frequencies, are in no state dict). Tied weights stay tied."""
    import torch

    memo: dict[int, Any] = {}
    for param in model.parameters():
        if id(param) not in memo:
            meta = torch.empty_like(param, device="meta")
            memo[id(param)] = torch.nn.Parameter(meta, requires_grad=param.requires_grad)
    for buffer in model.buffers():
        if id(buffer) not in memo:
            memo[id(buffer)] = buffer.detach().clone()
    return copy.deepcopy(model, memo)


@dataclass(frozen=True)
class ShardFigures:
    """How much of the model one rank held while training: parameter elements in its local shards, of all."""

    local: int
    total: int

    @property
    def fraction(self) -> float:
        return self.local / self.total if self.total else 1.0


def shard_figures(model: Any) -> ShardFigures:
    """Parameter elements of ``model`` this rank holds (each DTensor's local shard), and in the whole model."""
    from torch.distributed.tensor import DTensor

    local = total = 0
    for param in model.parameters():
        total += param.numel()
        local += param.to_local().numel() if isinstance(param, DTensor) else param.numel()
    return ShardFigures(local, total)


def shard_callback(figures: list[ShardFigures]) -> Any:
    """A ``TrainerCallback`` that measures each rank's FSDP shards when training starts (the model is sharded by
    then) and fills ``figures`` with every rank's, in rank order, on every rank."""
    from transformers import TrainerCallback

    class MeasureShards(TrainerCallback):  # type: ignore[misc]
        ftx_role = "shards"

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            import torch.distributed as dist

            mine = shard_figures(model)
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (mine.local, mine.total))
            figures[:] = [ShardFigures(local, total) for local, total in gathered]

    return MeasureShards()


def shard_metrics(figures: list[ShardFigures]) -> dict[str, float]:
    """The figures for ``metrics.json["train"]``: the smallest and largest share of the parameters a rank held."""
    if not figures:
        return {}
    shares = [f.fraction for f in figures]
    return {"params_held_min": round(min(shares), 4), "params_held_max": round(max(shares), 4)}


def consolidate(trainer: Any, skeleton: Any) -> Any:
    """Gather the trained weights (a collective: every rank calls it) and return, on rank 0, ``skeleton`` holding
    them on the training device; other ranks get ``None``."""
    import torch.distributed as dist

    full = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if dist.get_rank() != 0:
        return None
    skeleton.load_state_dict(full, strict=True, assign=True)
    tie = getattr(skeleton, "tie_weights", None)
    if callable(tie):
        tie()
    return skeleton.to(trainer.args.device)
