"""An rl recipe naming an unknown reward fails before any training, listing the installed rewards."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from ftx.testing import tiny_model_recipe_table


def _recipe(rewards):
    return {
        "model": tiny_model_recipe_table(),
        "data": {"format": "alpaca", "train": "tasks.jsonl"},
        "method": {"use": "full"},
        "objective": {"use": "rl", "rewards": rewards},
    }


@pytest.fixture
def tasks_file(tmp_path):
    from ftx.demo_data import prompt_rows, write_jsonl

    return write_jsonl(prompt_rows(20), tmp_path / "tasks.jsonl")


def test_validate_lists_installed_rewards_for_an_unknown_name(write_recipe, tasks_file):
    from ftx.cli import main

    path = write_recipe(_recipe([{"use": "exact-match"}, {"use": "exact-matc", "weight": 2.0}]))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "objective.rewards" in result.output and "[1]" in result.output
    assert "unknown reward 'exact-matc'" in result.output
    assert "Did you mean 'exact-match'?" in result.output
    assert "Installed rewards: exact-match, length-penalty, regex, reward-model, similarity" in result.output


def test_validate_checks_each_rewards_own_options(write_recipe, tasks_file):
    from ftx.cli import main

    path = write_recipe(_recipe([{"use": "length-penalty", "maximum": 20}]))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "objective.rewards[0].maximum: unknown key; did you mean 'max'?" in result.output
    assert "objective.rewards[0].max: is required" in result.output


def test_an_rl_recipe_needs_a_reward(write_recipe, tasks_file):
    from ftx.cli import main

    result = CliRunner().invoke(main, ["validate", str(write_recipe(_recipe([])))])
    assert result.exit_code == 2 and "at least one reward" in result.output


def test_unknown_reward_fails_at_run_start_without_a_registry_at_validation(plugin_manager, tmp_path):
    """Options built in code skip the validation-time check; the objective checks before training."""
    from ftx.context import Run
    from ftx.errors import RecipeError
    from ftx_rewards import RewardUse
    from ftx_rl import RLOptions
    from ftx_rl.objective import RLObjective

    objective = RLObjective(RLOptions(rewards=[RewardUse(use="shout")]))
    run = Run.__new__(Run)
    run.manager = plugin_manager
    with pytest.raises(RecipeError, match="unknown reward 'shout'.*Installed rewards: exact-match"):
        objective.train(model=None, ctx=run)


class _Shout:
    def __init__(self, options):
        self.bonus = options.bonus

    def __call__(self, prompts, completions, references):
        return [self.bonus if c.isupper() else 0.0 for c in completions]


def test_a_third_party_reward_is_a_few_lines_and_rl_recipes_accept_it(ftx_home):
    """The docstring's example: a plugin registers a reward; rl options validate against the registry."""
    import sys
    import types

    from ftx.plugins import make_plugin_manager
    from ftx.recipe.loader import validation_problems
    from ftx_hookspecs import Options, RewardSpec, hookimpl
    from ftx_rl import RLOptions

    class ShoutOptions(Options):
        bonus: float = 1.0

    plugin = types.ModuleType("shout_plugin")
    plugin._Shout = _Shout

    @hookimpl
    def ftx_register_rewards(register):
        register(RewardSpec("shout", "Rewards answers in capitals.", f"{__name__}:_Shout", ShoutOptions))

    plugin.ftx_register_rewards = ftx_register_rewards
    sys.modules.setdefault("shout_plugin", plugin)
    manager = make_plugin_manager(extra_plugins=[plugin])
    context = {"registry": manager.registry}
    options, problems = validation_problems(RLOptions, {"rewards": [{"use": "shout", "bonus": 2.0}]}, "objective", context)
    assert not problems and options.rewards[0].use == "shout"
    _, problems = validation_problems(RLOptions, {"rewards": [{"use": "shout", "bonnus": 2.0}]}, "objective", context)
    assert [str(p) for p in problems] == ["objective.rewards[0].bonnus: unknown key; did you mean 'bonus'?"]
    spec = manager.registry.get("reward", "shout").spec
    assert spec.build(ShoutOptions(bonus=2.0))(["p", "p"], ["HEY", "hey"], [None, None]) == [2.0, 0.0]
