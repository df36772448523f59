"""One CLI error handler for core and plugin commands; plugin commands served lazily with full usage;
`ftx plugins --json` carries each component's options schema; unknown keys list the valid ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from ftx.errors import DataError, FtxError, RecipeError, RunError
from ftx_hookspecs import CommandSpec, hookimpl

REPO = Path(__file__).resolve().parents[1]


class GateLike(FtxError):
    """How a plugin command reports a threshold that did not hold."""

    exit_code = 3


FAILURES: dict[str, BaseException] = {
    "recipe": RecipeError("train.lr: must be positive"),
    "data": DataError("data.train: no rows"),
    "run": RunError("training diverged"),
    "gate": GateLike("gate failed: exact_match >= 0.9: got 0.5"),
    "interrupt": KeyboardInterrupt(),
}


@click.command("boom")
@click.argument("what", type=click.Choice(sorted(FAILURES)))
@click.option("--times", type=int, default=1, help="How many times to fail.")
def boom(what: str, times: int) -> None:
    """Fail in the way asked."""
    raise FAILURES[what]


def boom_command() -> click.Command:
    return boom


class BoomPlugin:
    @hookimpl
    def ftx_register_commands(self, register: Callable[[CommandSpec], None]) -> None:
        register(CommandSpec("boom", "Fail on purpose.", f"{__name__}:boom_command"))


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """``ftx`` with an outside plugin that registers ``boom``."""
    from ftx import cli as cli_module
    from ftx.plugins import make_plugin_manager

    monkeypatch.setattr(cli_module, "_manager", lambda: make_plugin_manager(extra_plugins=[BoomPlugin()]))

    def invoke(*args: str) -> object:
        return CliRunner().invoke(cli_module.main, list(args))

    return invoke


@pytest.mark.parametrize("what,code", [("recipe", 2), ("data", 2), ("run", 1), ("gate", 3), ("interrupt", 130)])
def test_a_plugin_command_fails_like_a_core_command(cli, what, code):
    result = cli("boom", what)
    assert result.exit_code == code, result.output
    if what == "interrupt":
        assert "interrupted" in result.output
    else:
        assert result.output.startswith("error: ") and str(FAILURES[what]) in result.output
        assert "Traceback" not in result.output


def test_a_plugin_command_has_its_own_usage_and_usage_errors(cli):
    for flag in ("--help", "-h"):
        shown = cli("boom", flag)
        assert shown.exit_code == 0 and "Usage: ftx boom [OPTIONS] {" in shown.output and "--times" in shown.output
    wrong = cli("boom", "nonsense")
    assert wrong.exit_code == 2 and "Usage: ftx boom" in wrong.output and "Invalid value" in wrong.output
    listed = cli("--help")
    assert "boom" in listed.output and "Fail on purpose." in listed.output


def test_core_commands_share_the_handler(cli, tmp_path):
    missing = cli("validate", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and missing.output.startswith("error: ")


@pytest.mark.parametrize("command,usage", [("plan", "RECIPE"), ("sweep", "RECIPE"), ("runs", "[DIR]"), ("compare", "A B")])
def test_first_party_plugin_commands_show_their_full_usage(command, usage):
    from ftx.cli import main

    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: ftx {command} [OPTIONS] {usage}" in result.output
    assert ("--json" in result.output) == (command != "sweep") and "-h, --help" in result.output


def test_core_imports_no_optuna_and_registers_none_of_the_moved_commands():
    from ftx.cli import CORE_COMMANDS, main

    assert not {"plan", "sweep", "runs", "compare"} & set(main.commands) and not set(CORE_COMMANDS) - set(main.commands)
    for path in (REPO / "core" / "ftx").rglob("*.py"):
        assert "optuna" not in path.read_text(encoding="utf-8"), path


def test_plugins_json_carries_each_components_options_schema_without_torch():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom ftx.cli import main\n"
            "out = CliRunner().invoke(main, ['plugins', '--all', '--json']).output\n"
            "print(out)\nprint('HEAVY=' + ','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=REPO)
    assert done.returncode == 0, done.stderr
    text, heavy = done.stdout.rsplit("HEAVY=", 1)
    assert heavy.strip() == ""
    rows = {row["name"]: row for row in json.loads(text)["plugins"]}
    lora = {c["name"]: c for c in rows["lora"]["components"]}
    schema = lora["lora"]["options"]
    assert lora["lora"]["kind"] == "method" and schema["properties"]["r"]["default"] == 16
    assert "rank of each adapter" in schema["properties"]["r"]["description"]
    assert schema["additionalProperties"] is False  # unknown keys are errors
    for row in rows.values():
        if row["status"] == "ok":
            registered = sorted((k, n) for k, names in row["registers"].items() for n in names)
            assert sorted((c["kind"], c["name"]) for c in row["components"]) == registered
            assert all("error" not in c["options"] for c in row["components"]), row["name"]


def test_an_unknown_key_with_no_close_match_lists_the_valid_keys(write_recipe, tiny_dataset):
    from ftx.cli import main
    from ftx.testing import tiny_recipe

    recipe = tiny_recipe(tiny_dataset("alpaca"), method={"use": "lora", "zzzzzz": 1})
    recipe["data"]["xyz"] = 1
    result = CliRunner().invoke(main, ["validate", str(write_recipe(recipe))])
    assert result.exit_code == 2
    data_line = next(line for line in result.output.splitlines() if "data.xyz" in line)
    assert "data.xyz: unknown key; valid keys: format, train, eval, max_length" in data_line
    assert "system" in data_line  # the alpaca format's own option
    assert "method.zzzzzz: unknown key; valid keys: r, alpha, dropout, target_modules" in result.output
    close = CliRunner().invoke(main, ["validate", str(write_recipe(tiny_recipe(tiny_dataset("alpaca"),
                                                                                method={"use": "lora", "rr": 1}),
                                                                    name="close.toml"))])
    assert "method.rr: unknown key; did you mean 'r'?" in close.output and "valid keys" not in close.output
