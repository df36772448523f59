"""TRL's pairwise trainers with their model forwards run packed (:mod:`ftx_preference.packing`).

Each subclass changes one thing: the forward passes that compute the chosen and rejected
log-probabilities run inside :func:`~ftx_preference.packing.packed_forward`. Data preparation,
collation (the padded batch), losses, reference model or adapter, metrics and checkpoints are
TRL's. ``packing_stats`` counts what the packing saved, for the run's figures.

* ``dpo``: ``DPOTrainer._compute_loss`` (policy and reference forwards) and ``compute_ref_log_probs``
  (``precompute_ref_log_probs``), both through TRL's fused LM head.
* ``orpo``, ``cpo``, ``simpo``: ``concatenated_forward`` of ORPOTrainer / CPOTrainer (full logits).
"""

from __future__ import annotations

from typing import Any

from trl import DPOTrainer
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

from .packing import PackingStats, causal_lm, packed_forward


class _Packed:
    """What the packed trainers share: the stats and the packing context over the policy's causal LM."""

    def packing_stats_(self) -> PackingStats:
        stats = self.__dict__.get("packing_stats")  # also reached from the base __init__ (precomputed references)
        if stats is None:
            stats = self.__dict__["packing_stats"] = PackingStats()
        return stats

    def packed(self, *extra: Any) -> Any:
        """The packing context over the policy (and ``extra`` models, e.g. the reference)."""
        policy = causal_lm(self.accelerator.unwrap_model(self.model))
        others = [causal_lm(self.accelerator.unwrap_model(m)) for m in extra if m is not None]
        return packed_forward([policy, *others], self.packing_stats_())


class PackedDPOTrainer(_Packed, DPOTrainer):
    """DPOTrainer whose policy and reference forwards run packed."""

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        with self.packed(self.ref_model):
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        with self.packed(self.ref_model, model):
            return super().compute_ref_log_probs(model, inputs)


class PackedCPOTrainer(_Packed, CPOTrainer):
    """CPOTrainer (cpo, simpo) whose concatenated chosen + rejected forward runs packed."""

    def concatenated_forward(self, model: Any, batch: dict[str, Any]) -> Any:
        with self.packed():
            return super().concatenated_forward(model, batch)


class PackedORPOTrainer(_Packed, ORPOTrainer):
    """ORPOTrainer whose concatenated chosen + rejected forward runs packed."""

    def concatenated_forward(self, model: Any, batch: dict[str, Any]) -> Any:
        with self.packed():
            return super().concatenated_forward(model, batch)


def packed_variant(trainer_class: type) -> type:
    """The packed subclass of one of TRL's pairwise trainers (``DPOTrainer``, ``CPOTrainer``, ``ORPOTrainer``)."""
    variants = {DPOTrainer: PackedDPOTrainer, CPOTrainer: PackedCPOTrainer, ORPOTrainer: PackedORPOTrainer}
    return variants[trainer_class]
