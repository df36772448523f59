"""``ftx validate`` names everything a recipe selects: loggers and kernels too."""

from __future__ import annotations

from click.testing import CliRunner
from ftx.cli import main

from ftx.testing import tiny_recipe


def test_validate_summary_lists_loggers(tiny_dataset, write_recipe):
    recipe = tiny_recipe(tiny_dataset("alpaca"), evaluators=["loss"], loggers=[{"use": "tensorboard"}])
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 0, result.output
    assert "method=full; objective=sft; format=alpaca; evaluators=loss; loggers=tensorboard" in result.output
