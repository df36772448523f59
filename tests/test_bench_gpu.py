"""bench/gpu.py: its arithmetic, and a smoke run of the whole script with tiny shapes on the CPU.

The real figures need a CUDA machine (bench/gpu.sh); these tests keep the script working between
the sessions that have one. No timing is asserted: only that every part ran and reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import gpu  # noqa: E402


def test_steady_rate_leaves_out_warm_up_steps():
    clock = [(1, 0.0), (5, 10.0), (10, 11.0), (15, 12.0), (20, 13.0)]
    rate = gpu.steady_rate(clock, warmup=10, tokens_per_step=100)
    assert rate["timed_steps"] == 10 and rate["seconds"] == pytest.approx(2.0)
    assert rate["tokens_per_s"] == pytest.approx(500.0)
    with pytest.raises(RuntimeError, match="too few logged steps"):
        gpu.steady_rate(clock, warmup=20, tokens_per_step=100)


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", 121.0), ("Some Future GPU", None),
])
def test_peak_tflops_by_device_name(name, tflops, monkeypatch):
    monkeypatch.delenv("FTX_PEAK_TFLOPS", raising=False)
    assert gpu.peak_tflops(name) == tflops


def test_flop_count_uses_the_parameters_that_do_matrix_work(tmp_path):
    """N in 6·N·tokens is every parameter of the real 1B-shaped model but the input embedding and the norms."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = gpu.SHAPES["1b"]
    (tmp_path / "config.json").write_text(json.dumps({**shape, "model_type": "llama", "hidden_act": "silu"}))
    counted = gpu._param_counts(tmp_path)
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**shape))
    real = sum(p.numel() for p in model.parameters())
    norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    assert counted["total"] == real
    assert counted["matmul"] == real - model.get_input_embeddings().weight.numel() - norms
    assert 1.0e9 < real < 1.2e9  # "~1B-shaped"
    per_token = gpu.flops_per_token(shape, counted["matmul"], seq=2048)
    assert per_token == 6 * counted["matmul"] + 12 * 22 * 2048 * 2048


@pytest.mark.slow
@pytest.mark.long
def test_smoke_run_reports_every_part(tmp_path, ftx_home):
    results = tmp_path / "results.json"
    env = {**os.environ, "FTX_BENCH_RESULTS": str(results), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, "gpu.py", "--smoke", "--work", str(tmp_path / "work")],
                          cwd=BENCH, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(results.read_text())["GPU_smoke"]
    assert figures["mfu_run"]["tokens_per_s"] > 0 and figures["mfu_run"]["timed_steps"] == 4
    assert figures["lora_runs"]["trl"]["tokens_per_s"] > 0 and figures["ftx_over_trl"] > 0
    assert figures["lora_runs"]["ftx_liger"]["error"].startswith("skipped")  # no CUDA here
    assert figures["qlora_plan_estimate_mib"] > 0 and "error" not in figures["qlora_run"]
    assert "ftx LoRA / TRL SFTTrainer LoRA" in proc.stdout
