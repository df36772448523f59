"""``[distributed] strategy = "fsdp"``: two CPU processes on gloo shard the model (FSDP2 through transformers'
Trainer and accelerate), train like one process with the same global batch, write sharded checkpoints that
``--resume`` continues exactly after a SIGKILL, and save one model plain transformers/peft load.

Every run here starts torch's launcher and two Python processes (~30-50 s on two loaded cores), so the
runs are 'long'; the configuration they rest on is checked in tests/test_core_distributed_config.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ftx.testing import recipe_text, tiny_model_recipe_table
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
STEPS = 12
SAVE_EVERY = 3


def _recipe(tmp: Path, method: dict[str, Any], name: str, fsdp: bool = True) -> Path:
    path = tmp / f"{name}.toml"
    tables: dict[str, Any] = {
        "model": tiny_model_recipe_table(),
        "data": {"format": "alpaca", "train": str(REPO / "recipes" / "data" / "reverse.jsonl"), "eval": 0.1,
                 "max_length": 48, "limit": 400},
        "method": method, "objective": {"use": "sft"},
        "train": {"max_steps": STEPS, "lr": 1e-3, "log_every": 1, "seed": 3, "threads": 1, "batch_size": 8,
                  "save_every": SAVE_EVERY},
        "evaluation": {"samples": 0, "forgetting": False},
        "evaluators": [{"use": "loss"}],
    }
    if fsdp:
        tables["distributed"] = {"strategy": "fsdp"}
    path.write_text(recipe_text(tables), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _command(recipe: Path, out: Path, *extra: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "ftx.cli", "run", str(recipe), "--output", str(out), "--nproc-per-node", str(nproc),
            "--master-port", str(_free_port()), *extra]


def _ftx(recipe: Path, out: Path, *extra: str, nproc: int = 2) -> str:
    proc = subprocess.run(_command(recipe, out, *extra, nproc=nproc), capture_output=True, text=True, env=_env(),
                          timeout=900, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it, deepest first, as a machine losing power would."""
    import psutil

    root = psutil.Process(pid)
    for proc in [*reversed(root.children(recursive=True)), root]:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "logs.jsonl").read_text().splitlines() if '"loss"' in line]


def _train(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())["train"]


def _one_process(tmp: Path, method: dict[str, Any], name: str) -> Path:
    """The same recipe without [distributed], in one process with the same global batch (2 x 8)."""
    out = tmp / name
    _ftx(_recipe(tmp, method, f"{name}-plain", fsdp=False), out, "--set", "train.batch_size=16", nproc=1)
    return out


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory, ftx_home) -> dict[str, Path]:
    """Full fine-tuning: a 2-process FSDP run and the 1-process run with the same global batch."""
    tmp = tmp_path_factory.mktemp("fsdp-full")
    recipe = _recipe(tmp, {"use": "full"}, "full")
    one = _one_process(tmp, {"use": "full"}, "one")  # first: it builds the cached built-in model (see below)
    _ftx(recipe, tmp / "fsdp")
    return {"recipe": recipe, "fsdp": tmp / "fsdp", "one": one}


def _assert_half_held_and_same_losses(fsdp: Path, one: Path) -> None:
    figures = _train(fsdp)
    # measured on every rank from its local DTensor shards once training started
    assert 0.45 <= figures["params_held_min"] <= figures["params_held_max"] <= 0.55, figures
    a, b = _losses(fsdp), _losses(one)
    assert len(a) == len(b) == STEPS
    assert max(abs(x - y) for x, y in zip(a, b)) < 0.02, (a, b)
    assert a[-1] < a[0]


@pytest.mark.slow
@pytest.mark.long
def test_full_fsdp_shards_half_per_rank_trains_like_one_process_and_saves_one_model(full_runs):
    from transformers import AutoModelForCausalLM

    fsdp, one = full_runs["fsdp"], full_runs["one"]
    _assert_half_held_and_same_losses(fsdp, one)
    checkpoint = fsdp / "checkpoints" / f"checkpoint-{SAVE_EVERY}"
    # sharded while training: each rank wrote its own shard files (torch.distributed.checkpoint), no full weights
    assert sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert (checkpoint / "optimizer_0" / ".metadata").is_file()
    assert not list(checkpoint.glob("*.safetensors"))
    # the saved model is one consolidated Hugging Face folder that plain transformers loads
    model = AutoModelForCausalLM.from_pretrained(fsdp / "model")
    trained, reference = load_file(fsdp / "model" / "model.safetensors"), load_file(one / "model" / "model.safetensors")
    assert trained.keys() == reference.keys()
    assert max(float((trained[k] - reference[k]).abs().max()) for k in trained) < 5e-3
    assert sum(p.numel() for p in model.parameters()) == int(json.loads((fsdp / "metrics.json").read_text())
                                                            ["figures"]["total_params"])
    metrics = json.loads((fsdp / "metrics.json").read_text())
    assert metrics["after"]["loss"]["loss"] < metrics["before"]["loss"]["loss"]  # rank 0 evaluated the gathered model


@pytest.mark.slow
@pytest.mark.long
def test_lora_fsdp_shards_half_per_rank_and_saves_an_adapter_peft_loads(tmp_path, ftx_home):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    method = {"use": "lora", "r": 8, "target_modules": "all-linear", "dropout": 0.0}
    recipe = _recipe(tmp_path, method, "lora")
    # the 1-process run first: building the cached built-in model draws from the random generator, so the
    # adapters' initialisation differs between a run that built it and one that read it
    one = _one_process(tmp_path, method, "one")
    _ftx(recipe, tmp_path / "fsdp")
    fsdp = tmp_path / "fsdp"
    _assert_half_held_and_same_losses(fsdp, one)  # base weights and adapters alike are sharded
    adapter = fsdp / "model"
    saved = load_file(adapter / "adapter_model.safetensors")
    reference = load_file(one / "model" / "adapter_model.safetensors")
    assert saved.keys() == reference.keys() and all("lora_" in k for k in saved)
    assert max(float((saved[k] - reference[k]).abs().max()) for k in saved) < 5e-3
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    loaded = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert loaded and max(float(v.abs().max()) for v in loaded.values()) > 0  # trained B matrices, not the zero init


@pytest.mark.slow
@pytest.mark.long
def test_sigkill_after_a_checkpoint_then_resume_ends_at_the_uninterrupted_weights(full_runs, tmp_path):
    recipe, reference = full_runs["recipe"], full_runs["fsdp"]
    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(recipe, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    manifest = out / "checkpoints" / f"checkpoint-{SAVE_EVERY}" / "ftx-checkpoint.json"
    deadline = time.monotonic() + 600
    while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manifest.exists(), "no complete checkpoint appeared"
    _kill_tree(proc.pid)  # the ranks first: torch's launcher starts each in a session of its own
    proc.wait(timeout=60)
    assert not (out / "metrics.json").exists() and not (out / "model").exists()  # killed mid-run

    log = _ftx(recipe, out, "--resume")
    assert "resuming from" in log
    assert _losses(out)[-1] == pytest.approx(_losses(reference)[-1], abs=1e-6)
    a, b = load_file(out / "model" / "model.safetensors"), load_file(reference / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
