"""Loggers are chosen by ``[[loggers]]``: unknown names fail validation, absent ones cost nothing,
and a logger that breaks is switched off without failing the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ftx.errors import RecipeError
from ftx.plugins import make_plugin_manager
from ftx.testing import TINY_TEST_CONFIG
from ftx_hookspecs import LoggerSpec, hookimpl

from .test_core_hooks import Registrar

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "recipes" / "quickstart.toml"


def test_unknown_logger_fails_validation_with_the_installed_list(ftx_home):
    manager = make_plugin_manager()
    with pytest.raises(RecipeError) as err:
        manager.load_recipe(QUICKSTART, ['loggers=[{use = "neptune"}]'])
    assert "loggers[0].use: unknown logger 'neptune'." in str(err.value)
    assert "Installed loggers: mlflow, tensorboard, wandb." in str(err.value)
    with pytest.raises(RecipeError, match=r"loggers\[0\]\.log_recipes: unknown key; did you mean 'log_recipe'"):
        manager.load_recipe(QUICKSTART, ['loggers=[{use = "tensorboard", log_recipes = false}]'])


def test_disabled_logger_plugins_say_what_to_install(ftx_home, monkeypatch):
    monkeypatch.setenv("FTX_DISABLE_PLUGINS", "mlflow,tensorboard,wandb")
    manager = make_plugin_manager()
    assert manager.registry.names("logger") == []
    assert manager.load_recipe(QUICKSTART).loggers == []  # a recipe without loggers needs none
    with pytest.raises(RecipeError) as err:
        manager.load_recipe(QUICKSTART, ['loggers=[{use = "mlflow"}]'])
    assert "ships in the distribution 'ftx-logger-mlflow', which is not installed" in str(err.value)


PROBE = """
import sys
from ftx.plugins import make_plugin_manager
from ftx.runner import run_recipe
manager = make_plugin_manager()
recipe = manager.load_recipe(sys.argv[1], sys.argv[3:])
run_recipe(recipe, manager, output=sys.argv[2], echo=lambda m: None)
print(sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'tensorboard', 'tensorboardX', 'optuna', 'wandb'}))
"""


@pytest.mark.slow
def test_installed_but_unselected_loggers_import_nothing(tmp_path, ftx_home):
    cfg = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"
    overrides = [f"model.config={cfg}", "train.max_steps=2", "data.limit=40", "evaluation.forgetting=false",
                 "evaluation.samples=0", 'evaluators=[{use = "loss"}]']
    out = subprocess.run([sys.executable, "-c", PROBE, str(QUICKSTART), str(tmp_path / "run"), *overrides],
                         check=False, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "mlruns").exists()
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "wandb").exists()


class Boom:
    started = 0

    def __init__(self, options):
        pass

    def start(self, run):
        Boom.started += 1
        raise ConnectionError("tracking server unreachable")

    def log_metrics(self, run, step, metrics):
        raise AssertionError("a switched-off logger is not called again")


class BoomRegistrar:
    @hookimpl
    def ftx_register_loggers(self, register):
        register(LoggerSpec("boom", "Fails to connect.", "tests.test_runs_loggers:Boom"))


@pytest.mark.slow
def test_a_failing_logger_is_switched_off_and_the_run_finishes(tmp_path, ftx_home):
    from ftx.runner import run_recipe

    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) for i in range(5)) + "\n")
    cfg = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
    (tmp_path / "r.toml").write_text(
        f'[model]\nname = "builtin:tiny-llama"\nconfig = {{{cfg}}}\n[data]\nformat = "test-format"\ntrain = "qa.jsonl"\n'
        'eval = 0.2\n[method]\nuse = "test-method"\n[objective]\nuse = "test-objective"\n'
        '[evaluation]\nforgetting = false\nsamples = 0\n[[loggers]]\nuse = "boom"\n')
    manager = make_plugin_manager(extra_plugins=[Registrar(), BoomRegistrar()])
    said: list[str] = []
    metrics = run_recipe(manager.load_recipe(tmp_path / "r.toml"), manager, output=tmp_path / "run", echo=said.append)
    assert metrics["train"]["steps"] == 0.0 and Boom.started == 1
    expected = ("logger 'boom' failed in start and is switched off for this run: "
                "ConnectionError: tracking server unreachable")
    assert [m for m in said if "boom" in m] == [expected]
