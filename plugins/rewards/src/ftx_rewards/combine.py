"""Build a recipe's weighted list of rewards and sum them; shared by the rl objective and the evaluator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftx_hookspecs import RunContext

from . import RewardUse


@dataclass
class WeightedReward:
    """A built reward with its recipe name and weight."""

    name: str
    weight: float
    reward: Any

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str | None]) -> list[float]:
        values = list(self.reward(prompts, completions, references))
        if len(values) != len(completions):
            from ftx.errors import RunError

            raise RunError(f"reward {self.name!r} returned {len(values)} values for {len(completions)} completions")
        return [float(v) for v in values]


def resolve_path(ctx: RunContext, path: str) -> str:
    """Relative reward-model paths are read from the recipe file's folder, like data paths."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return str(candidate)
    base = getattr(ctx, "base_dir", None) or Path.cwd()  # RunContext.base_dir, hookspecs 1.2
    return str(Path(base) / candidate)


def build_rewards(ctx: RunContext, rewards: Sequence[RewardUse], reward_model: str | None) -> list[WeightedReward]:
    """Build every reward through the registry (``ctx.build_component``); an unknown name lists the installed ones."""
    from ftx.errors import RecipeError

    entries = list(rewards)
    if reward_model:
        entries.append(RewardUse(use="reward-model", path=reward_model))
    if not entries:
        raise RecipeError("objective: name at least one reward: rewards = [{use = \"exact-match\"}] or reward_model = \"<run folder>\"")
    built = []
    for entry in entries:
        options: dict[str, Any] = entry.reward_options()
        if entry.use == "reward-model" and isinstance(options.get("path"), str):
            options["path"] = resolve_path(ctx, options["path"])
        built.append(WeightedReward(entry.use, entry.weight, ctx.build_component("reward", entry.use, options)))
    return built


def total_reward(
    rewards: Sequence[WeightedReward], prompts: Sequence[str], completions: Sequence[str],
    references: Sequence[str | None],
) -> tuple[list[float], dict[str, float]]:
    """The weighted sum per completion, and the mean of each reward (for reports)."""
    totals = [0.0] * len(completions)
    means: dict[str, float] = {}
    for item in rewards:
        values = item(prompts, completions, references)
        for i, v in enumerate(values):
            totals[i] += item.weight * v
        key = item.name
        n = 2
        while key in means:
            key = f"{item.name}-{n}"
            n += 1
        means[key] = sum(values) / max(len(values), 1)
    return totals, means
