"""What the rl and rloo objectives add to training memory, for ``ftx plan`` (``memory_plan`` of its options, hookspecs 1.2).

``[train] batch_size`` already counts completions, so the activations are the planner's own. With
``beta > 0`` TRL keeps a reference model: the base with adapters off under an adapter method, else a
frozen copy of the weights. A ``reward_model`` is held too, but its size is not known from this
recipe's model, so it is named in a note. No torch is imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftx_hookspecs import MemoryPlan, ModelShape


def rl_plan(options: Any, shape: ModelShape, plan: MemoryPlan, objective: str = "rl") -> MemoryPlan:
    """The plan with the reference model ``beta > 0`` keeps, and a note for a reward model."""
    notes = plan.notes
    extra = plan.extra_weight_bytes
    if options.beta > 0 and plan.adapters:
        notes = (*notes, f"{objective}: the reference is the base with its adapters off (no copy)")
    elif options.beta > 0:
        extra += plan.weight_bytes
        notes = (*notes, f"{objective} with beta > 0 keeps a frozen reference model: one more copy of the weights")
    if options.reward_model:
        notes = (*notes, f"{objective}: the reward model {options.reward_model} is held in memory too; it is not counted")
    return replace(plan, extra_weight_bytes=extra, notes=notes)
