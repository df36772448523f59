"""What full fine-tuning holds in memory, for ``ftx plan`` (``memory_plan`` of its options, hookspecs 1.2).

Every parameter trains in the model's dtype unless ``freeze`` or ``freeze_layers`` turn it off; the
frozen ones are found by matching the options against the shape's parameter names (Llama's names,
the same rule :class:`ftx_full.method.FullMethod` applies to the loaded model). No torch is imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftx_hookspecs import MemoryPlan, ModelShape


def full_plan(options: Any, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
    """The plan with the frozen parameters taken out of the trainable ones (nothing to do when none are)."""
    if not options.freeze and not options.freeze_layers:
        return plan
    from .method import FullMethod

    method = FullMethod(options)
    frozen = sum(count for name, count in shape.named_parameters() if method._frozen(name))
    notes = plan.notes
    if options.freeze:
        notes = (*notes, "method.freeze: patterns matched against Llama-style parameter names")
    return replace(plan, trainable_params=plan.trainable_params - frozen,
                   details=(*plan.details, f"{frozen:,} frozen"), notes=notes)
