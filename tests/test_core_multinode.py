"""Two "nodes" on 127.0.0.1 (``--nnodes 2``, one process each) train exactly as one node with two processes,
through torchrun's rendezvous, and only rank 0 writes a run folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ftx.testing import TINY_TEST_CONFIG, recipe_text, tiny_model_recipe_table

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ftx(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "ftx.cli", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "logs.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.mark.slow
@pytest.mark.long
def test_two_nodes_of_one_process_equal_one_node_of_two(tmp_path, ftx_home):
    assert TINY_TEST_CONFIG
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text({
        "model": tiny_model_recipe_table(),
        "data": {"format": "alpaca", "train": str(REPO / "recipes" / "data" / "reverse.jsonl"), "eval": 0.1,
                 "max_length": 48, "limit": 400},
        "method": {"use": "full"}, "objective": {"use": "sft"},
        "train": {"max_steps": 6, "lr": 1e-3, "log_every": 1, "seed": 3, "threads": 1, "batch_size": 8},
        "evaluation": {"samples": 0, "forgetting": False},
    }), encoding="utf-8")

    port = str(_free_port())
    one_node = _ftx(str(recipe), "-o", str(tmp_path / "one-node"), "--nproc-per-node", "2", "--master-port", port)
    output = one_node.communicate(timeout=900)[0]
    assert one_node.returncode == 0, output[-3000:]

    port = str(_free_port())
    node1 = _ftx(str(recipe), "-o", str(tmp_path / "node1"), "--nnodes", "2", "--node-rank", "1",
                 "--master-addr", "127.0.0.1", "--master-port", port)
    node0 = _ftx(str(recipe), "-o", str(tmp_path / "node0"), "--nnodes", "2", "--node-rank", "0",
                 "--master-addr", "127.0.0.1", "--master-port", port)
    outputs = [node0.communicate(timeout=900)[0], node1.communicate(timeout=900)[0]]
    assert [node0.returncode, node1.returncode] == [0, 0], [o[-3000:] for o in outputs]

    assert not (tmp_path / "node1").exists()  # rank 1 writes nothing: one run folder, on the rank-0 machine
    assert _losses(tmp_path / "node0") == pytest.approx(_losses(tmp_path / "one-node"), abs=1e-5)
    a = load_file(tmp_path / "node0" / "model" / "model.safetensors")
    b = load_file(tmp_path / "one-node" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
