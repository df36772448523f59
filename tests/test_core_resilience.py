"""Runs survive faults: NaN steps are skipped, SIGTERM leaves a resumable run, resume equals an
uninterrupted run, broken checkpoints are skipped, and secrets never reach the run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ftx.errors import RunError
from ftx.testing import TINY_TEST_CONFIG
from ftx.trainer import guard_optimizer

REPO = Path(__file__).resolve().parents[1]


def _ctx(messages: list[str]):
    return SimpleNamespace(echo=messages.append, skipped_steps=0, train=SimpleNamespace(max_bad_steps=3))


def test_non_finite_gradients_skip_the_step_with_weights_unchanged():
    import torch

    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    messages: list[str] = []
    ctx = _ctx(messages)
    guard_optimizer(optimizer, ctx, max_bad_steps=3)
    param.grad = torch.tensor([1.0, float("nan"), 1.0])
    optimizer.step()
    assert torch.equal(param.detach(), torch.ones(3)) and ctx.skipped_steps == 1
    assert optimizer.state == {} or not optimizer.state[param]  # Adam moments untouched too
    param.grad = torch.tensor([1.0, 1.0, 1.0])
    optimizer.step()
    assert not torch.equal(param.detach(), torch.ones(3))
    assert "weights unchanged" in messages[0]


def test_too_many_bad_steps_in_a_row_abort_with_advice():
    import torch

    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=0.1)
    guard_optimizer(optimizer, _ctx([]), max_bad_steps=3)
    param.grad = torch.tensor([float("inf"), 0.0])
    optimizer.step()
    optimizer.step()
    with pytest.raises(RunError, match="NaN/inf for 3 steps in a row.*train.max_bad_steps"):
        optimizer.step()


RECIPE = """
[model]
name = "builtin:tiny-llama"
config = {config}
[data]
format = "alpaca"
train = "{data}"
eval = 0.1
max_length = 48
[method]
use = "full"
[objective]
use = "sft"
[train]
max_steps = {steps}
batch_size = 8
lr = 1e-3
save_every = 2
log_every = 2
seed = 7
threads = 1
"""


def _write(tmp_path: Path, steps: int) -> Path:
    config = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"
    path = tmp_path / f"r{steps}.toml"
    path.write_text(RECIPE.format(config=config, data=REPO / "recipes" / "data" / "reverse.jsonl", steps=steps))
    return path


def _ftx(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ftx.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, **kwargs)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, ftx_home):
    tmp = tmp_path_factory.mktemp("straight")
    recipe = _write(tmp, 12)
    proc = _ftx("run", str(recipe), "--output", str(tmp / "run"))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return recipe, tmp / "run"


@pytest.mark.slow
def test_sigterm_leaves_a_resumable_run_that_ends_bit_identical(uninterrupted, tmp_path):
    recipe, straight = uninterrupted
    out = tmp_path / "run"
    proc = _ftx("run", str(recipe), "--output", str(out))
    deadline = time.time() + 300
    while not (out / "checkpoints" / "checkpoint-4" / "ftx-checkpoint.json").exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and not (out / "metrics.json").exists()

    resumed = _ftx("run", str(recipe), "--output", str(out), "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert "resuming from" in err
    a, b = _weights(straight), _weights(out)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "resumed weights differ from the uninterrupted run"


@pytest.mark.slow
def test_truncated_checkpoint_is_skipped_for_the_previous_one(uninterrupted, tmp_path):
    import shutil

    recipe, straight = uninterrupted
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    (out / "metrics.json").unlink()
    newest = out / "checkpoints" / "checkpoint-12" / "optimizer.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    proc = _ftx("run", str(recipe), "--output", str(out), "--resume")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert "skipping checkpoint at step 12" in err and "truncated" in err
    assert "checkpoint-10" in err


def test_resume_refuses_a_changed_recipe(uninterrupted, tmp_path):
    import shutil

    recipe, straight = uninterrupted
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    proc = _ftx("run", str(recipe), "--output", str(out), "--resume", "--set", "train.lr=0.5")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "the recipe changed since the run started (train.lr)" in err


@pytest.mark.slow
def test_secrets_in_the_environment_reach_no_file_of_the_run(tmp_path, ftx_home):
    sentinel = "hf_SENTINEL_d41d8cd98f00b204e980"
    recipe = _write(tmp_path, 2)
    proc = _ftx("run", str(recipe), "--output", str(tmp_path / "run"),
                env={"HF_TOKEN": sentinel, "OPENAI_API_KEY": sentinel, "WANDB_API_KEY": sentinel})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(files) > 5
    assert not [p for p in files if sentinel.encode() in p.read_bytes()]


class _OOMOnce:
    def __init__(self, times: int) -> None:
        self.times = times
        self.batches: list[int] = []

    def train(self, model, run):
        import torch

        self.batches.append(run.recipe_obj.train.batch_size)
        if self.times:
            self.times -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "trained"


def _fake_run(backoff: bool, messages: list[str]):
    from ftx.recipe.schema import TrainSection

    train = TrainSection(batch_size=8, grad_accum=1, oom_backoff=backoff)
    return SimpleNamespace(recipe_obj=SimpleNamespace(train=train), echo=messages.append, stop_requested=False)


def test_out_of_memory_names_the_knobs():
    from ftx.runner import _train_with_backoff

    with pytest.raises(RunError, match="out of memory at batch_size = 8: lower train.batch_size.*gradient_checkpointing.*qlora"):
        _train_with_backoff(_OOMOnce(1), None, _fake_run(False, []))


def test_out_of_memory_backoff_keeps_the_effective_batch():
    from ftx.runner import _train_with_backoff

    messages: list[str] = []
    run = _fake_run(True, messages)
    objective = _OOMOnce(2)
    assert _train_with_backoff(objective, None, run) == "trained"
    assert objective.batches == [8, 4, 2]
    train = run.recipe_obj.train
    assert train.batch_size * train.grad_accum == 8
    assert "retrying with batch_size = 2, grad_accum = 4" in messages[-1]


@pytest.mark.slow
def test_same_seed_and_threads_give_the_same_weights(uninterrupted, tmp_path):
    recipe, straight = uninterrupted
    proc = _ftx("run", str(recipe), "--output", str(tmp_path / "again"))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    a, b = _weights(straight), _weights(tmp_path / "again")
    assert all((a[k] == b[k]).all() for k in a)
    logs = [(tmp_path / "again" / "logs.jsonl"), (straight / "logs.jsonl")]
    losses = [[json.loads(l).get("loss") for l in p.read_text().splitlines()] for p in logs]
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_killed_three_times_then_resumed_equals_uninterrupted(uninterrupted, tmp_path):
    import random

    recipe, straight = uninterrupted
    out = tmp_path / "run"
    rng = random.Random(0)
    seen_steps: list[int] = []
    for kill in range(3):
        args = ["run", str(recipe), "--output", str(out)] + (["--resume"] if kill else [])
        proc = _ftx(*args)
        target = 2 * (kill + 1)  # a checkpoint newer than the last kill's
        deadline = time.time() + 300
        while not (out / "checkpoints" / f"checkpoint-{target}" / "ftx-checkpoint.json").exists():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))  # somewhere in the following steps, perhaps mid-checkpoint
        proc.kill()
        proc.communicate()
        seen_steps.append(target)
    final = _ftx("run", str(recipe), "--output", str(out), "--resume")
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err[-2000:]
    a, b = _weights(straight), _weights(out)
    assert all((a[k] == b[k]).all() for k in a), f"differs after kills at {seen_steps}"


def test_torch_load_is_always_weights_only():
    offenders = []
    for path in list((REPO / "core").rglob("*.py")) + list((REPO / "plugins").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


def test_remote_code_needs_the_recipe_and_the_command_line():
    from ftx.errors import RecipeError
    from ftx.models.loading import check_remote_code
    from ftx.recipe.schema import ModelSection

    with pytest.raises(RecipeError, match="--trust-remote-code"):
        check_remote_code(ModelSection(name="x/y", trust_remote_code=True), allowed_on_command_line=False)
    check_remote_code(ModelSection(name="x/y", trust_remote_code=True), allowed_on_command_line=True)
    check_remote_code(ModelSection(name="x/y"), allowed_on_command_line=True)
