"""Every first-party objective gets ftx's training guarantees through ``ctx.fit``: a run stopped by
SIGTERM exits 130 leaving the checkpoint it names, a run killed with SIGKILL after its second
checkpoint resumes with ``--resume`` to weights bit-identical to an uninterrupted run, and a step
whose gradients are NaN is skipped with the weights unchanged."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ftx.testing import recipe_text, tiny_recipe, write_tiny_dataset

STEPS = 12
"""Optimizer steps of every run here; checkpoints every 2, so a stop or a kill lands mid-training."""

OBJECTIVES: dict[str, tuple[str, Any]] = {
    "sft": ("alpaca", "sft"),
    "classify": ("classification", "classify"),
    "reward": ("preference", "reward"),
    "dpo": ("preference", "dpo"),
    "kto": ("preference", "kto"),
    "orpo": ("preference", "orpo"),
    "cpo": ("preference", "cpo"),
    "simpo": ("preference", "simpo"),
    "rl": ("alpaca", {"use": "rl", "rewards": [{"use": "similarity"}], "num_generations": 2,
                      "max_completion_length": 4}),
    "rloo": ("alpaca", {"use": "rloo", "rewards": [{"use": "similarity"}], "num_generations": 2,
                        "max_completion_length": 4}),
    # 4 steps per rollout: the checkpoints at 2, 6 and 10 fall between two rollouts (the rollout is saved too)
    "ppo": ("alpaca", {"use": "ppo", "rewards": [{"use": "similarity"}], "max_completion_length": 4}),
}
MANIFEST = "ftx-checkpoint.json"


def write_objective_recipe(folder: Path, name: str, steps: int = STEPS, save_every: int | None = 2) -> Path:
    """A test-sized recipe of objective ``name`` on the tiny model and 24 rows of its data format."""
    fmt, objective = OBJECTIVES[name]
    folder.mkdir(parents=True, exist_ok=True)
    data = write_tiny_dataset(folder / f"{fmt}.jsonl", fmt)
    train: dict[str, Any] = {"seed": 7, "log_every": 2}
    if save_every:
        train["save_every"] = save_every
    recipe = tiny_recipe(data, fmt, objective=objective, steps=steps, train=train)
    path = folder / f"{name}.toml"
    path.write_text(recipe_text(recipe), encoding="utf-8")
    return path


def ftx_run(*args: str) -> subprocess.Popen[str]:
    """``ftx run ...`` in a child process (so it can be signalled or killed)."""
    return subprocess.Popen([sys.executable, "-m", "ftx.cli", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for_checkpoint(proc: subprocess.Popen[str], out: Path, step: int) -> None:
    """Poll until checkpoint ``step`` of the run in ``out`` is complete (its manifest written)."""
    manifest = out / "checkpoints" / f"checkpoint-{step}" / MANIFEST
    deadline = time.monotonic() + 600
    while not manifest.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before checkpoint {step}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"no checkpoint {step} after 10 minutes"
        time.sleep(0.01)


def weights(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def complete_steps(out: Path) -> list[int]:
    from ftx.checkpoints import checkpoints, verify

    return sorted(step for step, folder in checkpoints(out / "checkpoints") if verify(folder) is None)


def run_in_process(recipe: Path, out: Path, resume: bool = False) -> list[str]:
    """Run ``recipe`` into ``out`` in this process (no second start-up of torch); its progress lines."""
    from ftx.plugins import make_plugin_manager
    from ftx.runner import run_recipe

    manager = make_plugin_manager()
    lines: list[str] = []
    run_recipe(manager.load_recipe(recipe, []), manager, output=out, resume=resume, echo=lines.append)
    return lines


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, ftx_home: Path) -> Any:
    """``uninterrupted(name)`` -> (recipe, run folder) of one uninterrupted run per objective, made once."""
    made: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in made:
            folder = tmp_path_factory.mktemp(f"straight-{name}")
            recipe = write_objective_recipe(folder, name)
            run_in_process(recipe, folder / "run")
            made[name] = (recipe, folder / "run")
        return made[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", [n if n == "sft" else pytest.param(n, marks=pytest.mark.long) for n in OBJECTIVES])
def test_sigterm_then_sigkill_then_resume_equals_an_uninterrupted_run(name, uninterrupted, tmp_path):
    recipe, straight = uninterrupted(name)
    out = tmp_path / "run"

    # SIGTERM mid-run: exit 130, and the checkpoint the message names is complete
    proc = ftx_run(str(recipe), "--output", str(out))
    wait_for_checkpoint(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-3000:]
    named = re.findall(r"\S*checkpoint-\d+", err.split("stopped on request", 1)[-1])
    assert named, err[-3000:]
    stopped_at = Path(named[0].rstrip(";,."))
    from ftx.checkpoints import verify

    assert stopped_at.is_dir() and verify(stopped_at) is None, f"{stopped_at} is not a complete checkpoint"
    stop_step = int(stopped_at.name.split("-")[1])
    assert stop_step < STEPS and not (out / "metrics.json").exists()

    # resumed, then SIGKILL right after this run's second checkpoint (perhaps mid-write of the next one)
    proc = ftx_run(str(recipe), "--output", str(out), "--resume")
    first = stop_step + 2 - stop_step % 2
    wait_for_checkpoint(proc, out, first + 2)
    proc.kill()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert f"resuming from {stopped_at}" in err, err[-3000:]
    assert max(complete_steps(out)) < STEPS, "the kill came after training had ended"

    # resumed again: the same weights, bit for bit, as the run that was never interrupted
    lines = run_in_process(recipe, out, resume=True)
    assert any(line.startswith("resuming from") for line in lines), lines
    a, b = weights(straight), weights(out)
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert not different, f"{name}: resumed weights differ from the uninterrupted run in {different[:5]}"


def nan_gradient_at(step: int) -> Any:
    """A TrainerCallback that puts a NaN into one gradient just before optimizer step ``step`` (1-based) and
    keeps the trainable weights before and after that step, and after the next one."""
    from transformers import TrainerCallback

    class NaNGradient(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.snapshots: dict[str, dict[str, Any]] = {}

        @staticmethod
        def _weights(model: Any) -> dict[str, Any]:
            return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state.global_step == step - 1:
                grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
                grads[0].view(-1)[0] = float("nan")
                self.snapshots["before"] = self._weights(model)

        def on_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if state.global_step == step - 1:
                self.snapshots["after"] = self._weights(model)
            elif state.global_step == step:
                self.snapshots["next"] = self._weights(model)

    return NaNGradient()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_a_nan_gradient_skips_that_step_and_the_run_finishes(name, tmp_path, run_recipe, monkeypatch):
    from ftx.context import Run

    callback = nan_gradient_at(2)
    fit = Run.fit

    def fit_with_nan(self: Run, trainer: Any) -> Any:
        trainer.add_callback(callback)
        return fit(self, trainer)

    monkeypatch.setattr(Run, "fit", fit_with_nan)
    recipe = write_objective_recipe(tmp_path, name, steps=3, save_every=None)
    metrics = run_recipe(recipe, output=tmp_path / "run")
    assert metrics["train"]["steps"] == 3 and metrics["train"]["skipped_steps"] == 1
    before, after, following = (callback.snapshots[k] for k in ("before", "after", "next"))
    assert all((before[k] == after[k]).all() for k in before), "the NaN step changed the weights"
    assert any((after[k] != following[k]).any() for k in after), "the next step did not train"


# -- an objective written outside the repository, from docs/plugins/tutorial.md alone ----------------

OUTSIDE = Path(__file__).parent / "outside_objective"
TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "plugins" / "tutorial.md"

NAN_SCRIPT = """
import json, sys
from pathlib import Path
from transformers import TrainerCallback
from ftx.context import Run
from ftx.plugins import make_plugin_manager
from ftx.runner import run_recipe

class NaNAtStep2(TrainerCallback):
    seen = {}
    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if state.global_step == 1:
            next(p for p in model.parameters() if p.grad is not None).grad.view(-1)[0] = float("nan")
            self.seen["before"] = [p.detach().clone() for p in model.parameters()]
    def on_optimizer_step(self, args, state, control, model=None, **kw):
        if state.global_step == 1:
            after = [p.detach().clone() for p in model.parameters()]
            self.seen["unchanged"] = all(bool((a == b).all()) for a, b in zip(self.seen["before"], after))

fit = Run.fit
def fit_with_nan(self, trainer):
    trainer.add_callback(NaNAtStep2())
    return fit(self, trainer)
Run.fit = fit_with_nan

manager = make_plugin_manager()
recipe = manager.load_recipe(Path(sys.argv[1]), ["train.max_steps=3"])
metrics = run_recipe(recipe, manager, output=Path(sys.argv[2]), echo=lambda _m: None)
print(json.dumps({"train": metrics["train"], "unchanged": NaNAtStep2.seen.get("unchanged")}))
"""


def test_the_outside_objective_is_the_tutorials_code():
    import re

    text = TUTORIAL.read_text(encoding="utf-8")
    section = text[text.index("## An objective, with `ctx.fit`"):text.index("## Other kinds")]
    init, module = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    package = OUTSIDE / "src" / "ftx_answer_loss"
    assert init in (package / "__init__.py").read_text(encoding="utf-8")
    assert module in (package / "objective.py").read_text(encoding="utf-8")
    for path in package.glob("*.py"):
        imported = set(re.findall(r"^\s*(?:from|import) (ftx\.?\w*)", path.read_text(encoding="utf-8"), re.MULTILINE))
        assert imported <= {"ftx_hookspecs", "ftx.api", "ftx.errors"}, f"{path.name} imports {imported}"


@pytest.mark.slow
def test_an_outside_objective_gets_resume_and_the_nan_guard_from_ctx_fit(tmp_path, ftx_home):
    import json
    import shutil

    from ftx.testing import ThrowawayEnv

    source = shutil.copytree(OUTSIDE, tmp_path / "ftx-answer-loss")
    env = ThrowawayEnv(tmp_path / "venv")
    env.pip_install(source)
    data = write_tiny_dataset(tmp_path / "alpaca.jsonl", "alpaca")
    recipe = tmp_path / "answer.toml"
    recipe.write_text(recipe_text(tiny_recipe(data, "alpaca", objective="answer-loss", steps=STEPS,
                                              train={"seed": 7, "log_every": 2, "save_every": 2})), encoding="utf-8")

    def env_run(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(env.python), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})

    straight = env_run("-m", "ftx.cli", "run", str(recipe), "--output", str(tmp_path / "straight"))
    _, err = straight.communicate(timeout=900)
    assert straight.returncode == 0, err[-3000:]
    assert "answer-loss" in (tmp_path / "straight" / "recipe.lock.toml").read_text(encoding="utf-8")

    out = tmp_path / "run"
    proc = env_run("-m", "ftx.cli", "run", str(recipe), "--output", str(out))
    wait_for_checkpoint(proc, out, 4)
    proc.kill()
    proc.communicate(timeout=120)
    assert max(complete_steps(out)) < STEPS, "the kill came after training had ended"
    resumed = env_run("-m", "ftx.cli", "run", str(recipe), "--output", str(out), "--resume")
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0 and "resuming from" in err, err[-3000:]
    a, b = weights(tmp_path / "straight"), weights(out)
    assert all((a[k] == b[k]).all() for k in a), "resumed weights differ from the uninterrupted run"

    nan = env.run("-c", NAN_SCRIPT, str(recipe), str(tmp_path / "nan"), timeout=900)
    assert nan.returncode == 0, nan.stderr[-3000:]
    report = json.loads(nan.stdout.strip().splitlines()[-1])
    assert report["unchanged"] is True and report["train"]["skipped_steps"] == 1 and report["train"]["steps"] == 3


# -- ctx.fit on a trainer ftx's objectives do not use: TRL's own RewardTrainer ------------------------


def _fit_context(run_dir: Path, resume_from: Path | None = None) -> Any:
    from types import SimpleNamespace

    from ftx.recipe.schema import TrainSection

    messages: list[str] = []
    ctx = SimpleNamespace(train=TrainSection(), recipe={}, resume_from=resume_from, stop_requested=False,
                          skipped_steps=0, last_checkpoint=None, checkpoint_dir=run_dir / "checkpoints",
                          echo=messages.append, log_metrics=lambda metrics, step: None,
                          checkpoint_saved=lambda path, step: messages.append(f"saved {path}"))
    return ctx, messages


@pytest.mark.slow
def test_fit_guards_and_resumes_trls_reward_trainer(tiny_model_path, tmp_path):
    import torch
    from datasets import Dataset
    from ftx.checkpoints import verify
    from ftx.trainer import fit_trainer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    rows = [{"chosen": f"{i} plus one is {i + 1}", "rejected": f"{i} plus one is {i + 7}"} for i in range(16)]

    def trainer(out: Path, callbacks: list[Any] = ()) -> Any:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        args = RewardConfig(output_dir=str(out / "checkpoints"), max_steps=6, save_steps=2, per_device_train_batch_size=4,
                            learning_rate=1e-3, logging_steps=1, report_to="none", use_cpu=True, seed=3,
                            bf16=False, fp16=False, disable_tqdm=True)
        return RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                             callbacks=list(callbacks))

    straight_ctx, _ = _fit_context(tmp_path / "straight")
    straight = trainer(tmp_path / "straight")
    result = fit_trainer(straight_ctx, straight)
    assert result.metrics["steps"] == 6 and result.history
    checkpoints = sorted((tmp_path / "straight" / "checkpoints").glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert all(verify(c) is None for c in checkpoints)  # each has its manifest, written once complete

    resumed_ctx, messages = _fit_context(tmp_path / "straight", resume_from=checkpoints[0])
    resumed = trainer(tmp_path / "resumed")
    fit_trainer(resumed_ctx, resumed)
    a = dict(straight.model.named_parameters())
    assert all(torch.equal(p, a[n]) for n, p in resumed.model.named_parameters()), "resume is not bit-identical"

    nan = nan_gradient_at(2)
    nan_ctx, messages = _fit_context(tmp_path / "nan")
    fit_trainer(nan_ctx, trainer(tmp_path / "nan", [nan]))
    assert nan_ctx.skipped_steps == 1 and any("optimizer step skipped" in m for m in messages)
    before, after = nan.snapshots["before"], nan.snapshots["after"]
    assert all(torch.equal(before[k], after[k]) for k in before)
