"""Every hook of ftx_hookspecs, exercised through the real plugin manager and runner.

``tests/test_core_docs.py`` checks that each hookspec has a ``test_<hook name>`` here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ftx.plugins import make_plugin_manager
from ftx.testing import TINY_TEST_CONFIG
from ftx_hookspecs import (
    ChatExample,
    CommandSpec,
    DataFormatSpec,
    EvaluatorSpec,
    KernelSpec,
    LoggerSpec,
    MethodSpec,
    ObjectiveSpec,
    Options,
    RewardSpec,
    hookimpl,
    hookspec,
)

from .test_core_plugins import make_distribution


class Recorder:
    """A plugin that implements every lifecycle hook and registers one component of each kind."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def ftx_recipe_loaded(self, recipe, path):
        self.calls.append(("recipe_loaded", {"recipe": recipe, "path": path}))

    @hookimpl
    def ftx_run_start(self, run):
        self.calls.append(("run_start", {"run_dir": run.run_dir, "model_exists": (run.run_dir / "model").exists()}))

    @hookimpl
    def ftx_log_metrics(self, run, step, metrics):
        self.calls.append(("log_metrics", {"step": step, "metrics": dict(metrics)}))

    @hookimpl
    def ftx_checkpoint_saved(self, run, step, path):
        self.calls.append(("checkpoint_saved", {"step": step, "path": path, "complete": (path / "trainer_state.json").exists()}))

    @hookimpl
    def ftx_run_end(self, run, metrics, error):
        self.calls.append(("run_end", {"metrics": metrics, "error": error}))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [args for call, args in self.calls if call == name]


class ReverseOnly(Options):
    suffix: str = ""


class Registrar:
    """Registers one component of each kind, implemented in this module."""

    @hookimpl
    def ftx_register_methods(self, register):
        register(MethodSpec("test-method", "Full training, recorded.", "tests.test_core_hooks:RecordingMethod"))

    @hookimpl
    def ftx_register_objectives(self, register):
        register(ObjectiveSpec("test-objective", "Does nothing.", "tests.test_core_hooks:NoTraining"))

    @hookimpl
    def ftx_register_data_formats(self, register):
        register(DataFormatSpec("test-format", "q/a rows.", "tests.test_core_hooks:QAFormat", ReverseOnly))

    @hookimpl
    def ftx_register_rewards(self, register):
        register(RewardSpec("test-reward", "Length of the completion.", "tests.test_core_hooks:LengthReward"))

    @hookimpl
    def ftx_register_evaluators(self, register):
        register(EvaluatorSpec("test-eval", "Counts examples.", "tests.test_core_hooks:CountEvaluator"))

    @hookimpl
    def ftx_register_commands(self, register):
        register(CommandSpec("test-cmd", "Says hello.", "tests.test_core_hooks:hello_command"))


class RecordingMethod:
    applied = 0

    def __init__(self, options):
        pass

    def load_kwargs(self, ctx):
        return {}

    def apply(self, model, ctx):
        RecordingMethod.applied += 1
        return model

    def save(self, model, path, ctx):
        model.save_pretrained(path)


class NoTraining:
    def __init__(self, options):
        pass

    def train(self, model, ctx):
        from ftx_hookspecs import TrainResult

        reward = ctx.build_component("reward", "test-reward", {})
        ctx.log_metrics({"loss": 1.5, "reward": reward(["p"], ["abc"], [None])[0]}, 1)
        return TrainResult(metrics={"steps": 0.0})


class QAFormat:
    def __init__(self, options):
        self.suffix = options.suffix

    def to_example(self, row):
        return ChatExample([{"role": "user", "content": row["q"]}, {"role": "assistant", "content": row["a"] + self.suffix}])


class LengthReward:
    def __init__(self, options):
        pass

    def __call__(self, prompts, completions, references):
        return [float(len(c)) for c in completions]


class CountEvaluator:
    def __init__(self, options):
        pass

    def evaluate(self, model, examples, ctx):
        return {"n": float(len(examples))}


def hello_command():
    import click

    @click.command()
    @click.argument("who")
    def hello(who):
        click.echo(f"hello {who}")

    return hello


@pytest.fixture
def hooked_run(tmp_path, ftx_home):
    rows = [{"q": f"question {i}", "a": f"answer {i}"} for i in range(10)]
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
    (tmp_path / "r.toml").write_text(
        f'[model]\nname = "builtin:tiny-llama"\nconfig = {{{cfg}}}\n'
        '[data]\nformat = "test-format"\ntrain = "qa.jsonl"\neval = 0.2\nsuffix = "!"\n'
        '[method]\nuse = "test-method"\n[objective]\nuse = "test-objective"\n[[evaluators]]\nuse = "test-eval"\n'
    )
    recorder = Recorder()
    manager = make_plugin_manager(extra_plugins=[recorder, Registrar()])
    recipe = manager.load_recipe(tmp_path / "r.toml")
    from ftx.runner import run_recipe

    metrics = run_recipe(recipe, manager, output=tmp_path / "run", echo=lambda m: None)
    return recorder, metrics, tmp_path / "run"


def test_ftx_register_methods(hooked_run):
    _, metrics, run_dir = hooked_run
    assert RecordingMethod.applied >= 1
    assert "method:test-method" in (run_dir / "recipe.lock.toml").read_text()


def test_ftx_register_objectives(hooked_run):
    _, metrics, _ = hooked_run
    assert metrics["train"]["steps"] == 0.0


def test_ftx_register_data_formats(hooked_run):
    _, metrics, _ = hooked_run
    assert metrics["data"]["train"] == 8 and metrics["data"]["eval"] == 2


def test_ftx_register_evaluators(hooked_run):
    _, metrics, _ = hooked_run
    assert metrics["before"]["test-eval"] == {"n": 2.0} and metrics["after"]["test-eval"] == {"n": 2.0}


def test_ftx_register_rewards(hooked_run):
    recorder, _, _ = hooked_run
    assert recorder.named("log_metrics")[0]["metrics"]["reward"] == 3.0


def test_ftx_register_commands(tmp_path, ftx_home):
    code = (
        "from ftx_hookspecs import CommandSpec, hookimpl\n"
        "@hookimpl\ndef ftx_register_commands(register):\n"
        "    register(CommandSpec('hello', 'Says hello.', 'ftx_hello_cmd.cmd:make'))\n"
    )
    site = make_distribution(tmp_path / "site", "ftx-hello", "ftx_hello_cmd", code)
    (site / "ftx_hello_cmd" / "cmd.py").write_text(
        "import click\ndef make():\n    @click.command()\n    @click.argument('who')\n"
        "    def hello(who):\n        click.echo(f'hello {who}')\n    return hello\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    help_text = subprocess.run([sys.executable, "-m", "ftx.cli", "--help"], capture_output=True, text=True, env=env).stdout
    assert "hello" in help_text and "Says hello." in help_text
    result = subprocess.run([sys.executable, "-m", "ftx.cli", "hello", "world"], capture_output=True, text=True, env=env)
    assert result.stdout.strip() == "hello world", result.stderr


def test_ftx_addhooks(ftx_home):
    class Spec:
        @hookspec
        def ftx_demo_event(self, value):
            """A plugin's own hook."""

    class Publisher:
        @hookimpl
        def ftx_addhooks(self, pluginmanager):
            pluginmanager.add_hookspecs(Spec)

    class Listener:
        @hookimpl
        def ftx_demo_event(self, value):
            return value * 2

    manager = make_plugin_manager(extra_plugins=[Publisher(), Listener()])
    assert not manager.registry.broken
    assert manager.pm.hook.ftx_demo_event(value=21) == [42]


def test_ftx_recipe_loaded(hooked_run, tmp_path):
    recorder, _, _ = hooked_run
    [loaded] = recorder.named("recipe_loaded")
    assert loaded["path"] == tmp_path / "r.toml"
    assert loaded["recipe"]["data"]["suffix"] == "!" and loaded["recipe"]["method"]["use"] == "test-method"


def test_ftx_run_start(hooked_run):
    recorder, _, run_dir = hooked_run
    [start] = recorder.named("run_start")
    assert start["run_dir"] == run_dir and not start["model_exists"]
    assert [c for c, _ in recorder.calls][:2] == ["recipe_loaded", "run_start"]


def test_ftx_log_metrics(hooked_run):
    recorder, _, run_dir = hooked_run
    [logged] = recorder.named("log_metrics")
    assert logged["step"] == 1 and logged["metrics"]["loss"] == 1.5
    lines = (run_dir / "logs.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["loss"] == 1.5  # the built-in metrics_log plugin saw it too


def test_ftx_run_end(hooked_run):
    recorder, metrics, _ = hooked_run
    [end] = recorder.named("run_end")
    assert end["error"] is None and end["metrics"] == metrics
    assert recorder.calls[-1][0] == "run_end"


def test_ftx_run_end_reports_the_error(tmp_path, ftx_home, monkeypatch):
    (tmp_path / "qa.jsonl").write_text('{"q": "x"}\n')
    (tmp_path / "r.toml").write_text(
        '[model]\nname = "builtin:tiny-llama"\n[data]\nformat = "test-format"\ntrain = "qa.jsonl"\n'
        '[method]\nuse = "test-method"\n[objective]\nuse = "test-objective"\n'
    )
    recorder = Recorder()
    manager = make_plugin_manager(extra_plugins=[recorder, Registrar()])
    recipe = manager.load_recipe(tmp_path / "r.toml")
    from ftx.runner import run_recipe

    # a format failing on the data: the run never starts (its folder is not written), so no run hooks
    with pytest.raises(Exception, match="preparing data failed: KeyError"):
        run_recipe(recipe, manager, output=tmp_path / "run", echo=lambda m: None)
    assert recorder.named("run_start") == [] and recorder.named("run_end") == []

    # a failure once the run started is reported to run_end
    (tmp_path / "qa.jsonl").write_text('{"q": "x", "a": "y"}\n' * 4)
    recipe = manager.load_recipe(tmp_path / "r.toml")

    def broken_apply(self, model, ctx):
        raise KeyError("broken method")

    monkeypatch.setattr(RecordingMethod, "apply", broken_apply)
    with pytest.raises(Exception, match="KeyError"):
        run_recipe(recipe, manager, output=tmp_path / "run2", echo=lambda m: None)
    [end] = recorder.named("run_end")
    assert end["metrics"] is None and isinstance(end["error"], KeyError)
    assert not (tmp_path / "run2" / "metrics.json").exists()


@pytest.mark.slow
def test_ftx_checkpoint_saved(tmp_path, ftx_home):
    rows = [{"instruction": "Copy.", "input": "a b", "output": "a b"}] * 12
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
    (tmp_path / "r.toml").write_text(
        f'[model]\nname = "builtin:tiny-llama"\nconfig = {{{cfg}}}\n[data]\nformat = "alpaca"\ntrain = "d.jsonl"\n'
        '[method]\nuse = "full"\n[objective]\nuse = "sft"\n[train]\nmax_steps = 4\nbatch_size = 4\nsave_every = 2\n'
    )
    recorder = Recorder()
    manager = make_plugin_manager(extra_plugins=[recorder])
    from ftx.runner import run_recipe

    run_recipe(manager.load_recipe(tmp_path / "r.toml"), manager, output=tmp_path / "run", echo=lambda m: None)
    saved = recorder.named("checkpoint_saved")
    assert [s["step"] for s in saved] == [2, 4]
    assert all(s["complete"] and s["path"].parent == tmp_path / "run" / "checkpoints" for s in saved)


class LabelOptions(Options):
    label: str = ""


class RecordingLogger:
    """A logger (``[[loggers]] use = "test-logger"``) that records what the core tells it."""

    events: list[tuple[Any, ...]] = []

    def __init__(self, options):
        self.label = options.label

    def start(self, run):
        RecordingLogger.events.append(("start", self.label, run.recipe["loggers"][0]["use"]))

    def log_metrics(self, run, step, metrics):
        RecordingLogger.events.append(("log", step, dict(metrics)))

    def end(self, run, metrics, error):
        RecordingLogger.events.append(("end", {"before", "after", "train"} <= set(metrics or {}), error))


def _registrar_recipe(tmp_path: Path) -> str:
    """A recipe (as text) on the tiny model using :class:`Registrar`'s components, with a few q/a rows beside it."""
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) for i in range(5)) + "\n")
    cfg = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
    return (f'[model]\nname = "builtin:tiny-llama"\nconfig = {{{cfg}}}\n'
            '[data]\nformat = "test-format"\ntrain = "qa.jsonl"\neval = 0.2\n'
            '[method]\nuse = "test-method"\n[objective]\nuse = "test-objective"\n'
            '[evaluation]\nforgetting = false\nsamples = 0\n')


class LoggerRegistrar:
    @hookimpl
    def ftx_register_loggers(self, register):
        register(LoggerSpec("test-logger", "Records events.", "tests.test_core_hooks:RecordingLogger", LabelOptions))


@pytest.mark.slow
def test_ftx_register_loggers(tmp_path, ftx_home):
    from ftx.errors import RecipeError
    from ftx.runner import run_recipe

    base = _registrar_recipe(tmp_path)
    (tmp_path / "r.toml").write_text(base + '[[loggers]]\nuse = "test-logger"\nlabel = "x"\n')
    manager = make_plugin_manager(extra_plugins=[Registrar(), LoggerRegistrar()])
    RecordingLogger.events.clear()
    run_recipe(manager.load_recipe(tmp_path / "r.toml"), manager, output=tmp_path / "run", echo=lambda m: None)
    assert [e[0] for e in RecordingLogger.events] == ["start", "log", "end"]
    assert RecordingLogger.events[0][1:] == ("x", "test-logger")
    assert RecordingLogger.events[1][1] == 1 and RecordingLogger.events[1][2]["loss"] == 1.5
    assert RecordingLogger.events[2] == ("end", True, None)
    assert 'use = "test-logger"' in (tmp_path / "run" / "recipe.lock.toml").read_text()

    (tmp_path / "bad.toml").write_text(base + '[[loggers]]\nuse = "test-loger"\n')
    with pytest.raises(RecipeError) as err:
        manager.load_recipe(tmp_path / "bad.toml")
    assert "loggers[0].use" in str(err.value) and "Did you mean 'test-logger'?" in str(err.value)


class ScaleOptions(Options):
    scale: float = 1.0


class RecordingKernel:
    """A kernel (``[[kernels]] use = "test-kernel"``) that scales the final norm and records the order of events."""

    events: list[str] = []

    def __init__(self, options):
        self.scale = options.scale

    def apply(self, model, run):
        import torch

        with torch.no_grad():
            model.model.norm.weight.mul_(self.scale)
        RecordingKernel.events.append(f"kernel:{self.scale}:applied={RecordingMethod.applied}")
        return model


class KernelRegistrar:
    @hookimpl
    def ftx_register_kernels(self, register):
        register(KernelSpec("test-kernel", "Scales the final norm.", "tests.test_core_hooks:RecordingKernel", ScaleOptions))


@pytest.mark.slow
def test_ftx_register_kernels(tmp_path, ftx_home):
    """Kernels apply in recipe order to the loaded model, before the method wraps it, and reach the saved model."""
    from ftx.errors import RecipeError
    from ftx.runner import run_recipe
    from safetensors.torch import load_file

    base = _registrar_recipe(tmp_path)
    (tmp_path / "r.toml").write_text(
        base + '[[kernels]]\nuse = "test-kernel"\nscale = 2.0\n[[kernels]]\nuse = "test-kernel"\nscale = 3.0\n'
    )
    manager = make_plugin_manager(extra_plugins=[Registrar(), KernelRegistrar()])
    RecordingKernel.events.clear()
    applied_before = RecordingMethod.applied
    run_recipe(manager.load_recipe(tmp_path / "r.toml"), manager, output=tmp_path / "run", echo=lambda m: None)
    assert RecordingKernel.events == [f"kernel:2.0:applied={applied_before}", f"kernel:3.0:applied={applied_before}"]
    assert RecordingMethod.applied == applied_before + 1
    saved = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert saved["model.norm.weight"].eq(6.0).all()  # RMSNorm weights start at 1.0; 1 x 2 x 3
    lock = (tmp_path / "run" / "recipe.lock.toml").read_text()
    assert 'use = "test-kernel"' in lock and "scale = 3.0" in lock

    (tmp_path / "bad.toml").write_text(base + '[[kernels]]\nuse = "test-kernal"\n')
    with pytest.raises(RecipeError) as err:
        manager.load_recipe(tmp_path / "bad.toml")
    assert "kernels[0].use" in str(err.value) and "Did you mean 'test-kernel'?" in str(err.value)
