"""Two CPU processes on gloo train like one process with the same global batch, into one run folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ftx.testing import TINY_TEST_CONFIG

REPO = Path(__file__).resolve().parents[1]

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
max_steps = 12
lr = 1e-3
log_every = 1
seed = 3
threads = 1
[[evaluators]]
use = "loss"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "logs.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.mark.slow
@pytest.mark.long
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, ftx_home):
    config = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(config=config, data=REPO / "recipes" / "data" / "reverse.jsonl"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "ftx.cli", "run", str(recipe), "--output", str(tmp_path / "one"),
                          "--set", "train.batch_size=16"], capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "ftx.cli", "run", str(recipe), "--output", str(tmp_path / "two"),
                          "--set", "train.batch_size=8", "--nproc-per-node", "2", "--master-port", str(_free_port())],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 12  # logged once, by rank 0 only
    assert abs(a[0] - b[0]) < 0.05  # the same initial model on different samples of the same data
    assert abs(sum(a[-4:]) / 4 - sum(b[-4:]) / 4) < 0.1 * (sum(a[-4:]) / 4)
    assert a[-1] < a[0] - 0.3 and b[-1] < b[0] - 0.3
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["after"]["loss"]["loss"] < metrics["before"]["loss"]["loss"]
    assert two.stdout.count("done in") == 1
