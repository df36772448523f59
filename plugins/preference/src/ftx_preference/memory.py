"""What the dpo, kto, orpo, cpo and simpo objectives add to training memory, for ``ftx plan`` (``memory_plan`` of their options).

A reference model: none with ``precompute_ref_log_probs``, none with an adapter method (the base with
its adapters off is the reference), else a frozen copy of the weights. DPO also puts chosen and
rejected answers through the model in one pass: two sequences per example; so do the reference-free
orpo, cpo and simpo, which keep no reference model. No torch is imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftx_hookspecs import MemoryPlan, ModelShape


def reference_plan(options: Any, objective: str, plan: MemoryPlan) -> MemoryPlan:
    """The plan with the frozen reference model the objective keeps, if it keeps one."""
    if options.precompute_ref_log_probs:
        note = f"{objective}: reference log-probs are computed before training, so no reference model is kept"
        return replace(plan, notes=(*plan.notes, note))
    if plan.adapters:
        return replace(plan, notes=(*plan.notes, f"{objective}: the reference is the base with its adapters off (no copy)"))
    note = f"{objective} keeps a frozen reference model: one more copy of the weights"
    return replace(plan, extra_weight_bytes=plan.extra_weight_bytes + plan.weight_bytes, notes=(*plan.notes, note))


def dpo_plan(options: Any, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
    """A reference model (see :func:`reference_plan`), and chosen plus rejected answers in each forward pass."""
    return replace(reference_plan(options, "dpo", plan), sequences_per_example=2)


def kto_plan(options: Any, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
    """A reference model (see :func:`reference_plan`); one answer per example."""
    return reference_plan(options, "kto", plan)


def reference_free_plan(objective: str, plan: MemoryPlan) -> MemoryPlan:
    """No reference model; chosen plus rejected answers in each forward pass (orpo, cpo, simpo)."""
    note = f"{objective} keeps no reference model; chosen and rejected answers go through the model together"
    return replace(plan, sequences_per_example=2, notes=(*plan.notes, note))
