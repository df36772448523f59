"""ftx plugin: the ``liger`` kernels — Liger's fused Triton kernels swapped into a model on CUDA.

Only the options live here, so ``ftx validate`` checks a recipe's ``[[kernels]]`` table without
importing torch or liger-kernel; the kernel itself is in :mod:`ftx_liger.kernel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ftx_hookspecs import KernelSpec, Options, hookimpl
from pydantic import Field


class LigerOptions(Options):
    """``[[kernels]] use = "liger"``: which of Liger's kernels replace the model's own layers."""

    rms_norm: bool = Field(True, description="fused RMSNorm")
    rope: bool = Field(True, description="fused rotary position embedding")
    swiglu: bool = Field(True, description="fused SwiGLU MLP activation")
    fused_linear_cross_entropy: bool = Field(
        True,
        description="compute the LM head and cross-entropy in chunks, never holding the full logits "
        "(the largest activation at big vocabularies); training logits are then not returned",
    )
    cross_entropy: bool = Field(
        False, description="Liger's cross-entropy on full logits (only when fused_linear_cross_entropy is off)"
    )

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan`` (hookspecs 1.2): the fused loss never holds the full logits. Needs no GPU to answer."""
        if not self.fused_linear_cross_entropy:
            return plan
        note = "kernels 'liger': the loss is computed in chunks, so the full logits are never held"
        return replace(plan, chunked_loss=True, notes=(*plan.notes, note))


@hookimpl
def ftx_register_kernels(register: Callable[[KernelSpec], None]) -> None:
    """Register the ``liger`` kernels."""
    register(KernelSpec(
        "liger",
        "Liger's fused Triton kernels on CUDA: less memory, more tokens/s (pip install liger-kernel).",
        "ftx_liger.kernel:LigerKernel",
        LigerOptions,
    ))
