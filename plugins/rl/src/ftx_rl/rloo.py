"""The ``rloo`` objective on TRL's RLOOTrainer: REINFORCE with leave-one-out baselines, ftx rewards as reward functions."""

from __future__ import annotations

from typing import Any

from ftx_hookspecs import RunContext, TrainResult

from . import RLOOOptions
from .objective import train_sampled


class RLOOObjective:
    """Samples ``num_generations`` answers per prompt; each answer's advantage is its reward minus the mean of
    the others' (after the KL penalty), and the policy follows REINFORCE with PPO-style clipping."""

    def __init__(self, options: RLOOOptions) -> None:
        self.options = options

    def train(self, model: Any, ctx: RunContext) -> TrainResult:
        from trl import RLOOConfig, RLOOTrainer

        opts = self.options
        return train_sampled(model, ctx, opts, RLOOConfig, RLOOTrainer, normalize_advantages=opts.normalize_advantages)
