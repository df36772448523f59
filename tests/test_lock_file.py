"""recipe.lock.toml records every component a run built, those nested in another's options included."""

from __future__ import annotations

from ftx.recipe.toml_io import read_toml
from ftx_hookspecs import Options, RewardSpec, hookimpl

from ftx.testing import tiny_recipe


class Shortness(Options):
    target: int = 5


class ShortReward:
    """Higher for shorter completions: an outside reward, registered by this test module."""

    def __init__(self, options: Shortness) -> None:
        self.target = options.target

    def __call__(self, prompts, completions, references):
        return [-abs(len(c) - self.target) / 10 for c in completions]


class OutsideRewards:
    @hookimpl
    def ftx_register_rewards(self, register):
        register(RewardSpec("shortness", "Prefers short answers.", "tests.test_lock_file:ShortReward", Shortness))


def test_a_reward_inside_an_evaluator_is_recorded_with_its_provider(tiny_dataset, write_recipe, run_recipe, tmp_path):
    data = tiny_dataset("alpaca", count=12)
    reward_eval = {"use": "reward", "rewards": [{"use": "shortness", "target": 3}], "limit": 2, "max_new_tokens": 4}
    recipe = write_recipe(tiny_recipe(data, evaluators=[reward_eval], steps=1))
    run_recipe(recipe, output=tmp_path / "run", plugins=[OutsideRewards()])

    components = read_toml(tmp_path / "run" / "recipe.lock.toml")["ftx"]["components"]
    assert "reward:shortness" in components, components
    assert components["reward:shortness"].startswith("OutsideRewards")  # the plugin object that registered it
    assert components["evaluator:reward"].startswith("ftx-rewards")
