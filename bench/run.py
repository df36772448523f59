"""Run every benchmark in one job and print one table: `python bench/run.py`.

Each benchmark is its own script (bench/cli.py, bench/startup.py, bench/sft.py, bench/sft_real.py,
bench/mfu.py, bench/data.py, bench/data_scale.py, bench/methods.py, bench/evaluator.py,
bench/preference_packing.py) and merges its figures into bench/results.json; every figure is a ratio
against a baseline measured in the same job. Pass --quick for fewer steps and repeats, --smoke to run
the benchmarks that have one on a tiny model (a check of the code: no figures that count). The GPU
figures come from bench/gpu.sh on a CUDA machine; `--gpu-smoke` adds its tiny-shape run here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from typing import Any

from common import BENCH, RESULTS, print_table

SUITE = {
    "cli": ["cli.py"],
    "startup": ["startup.py"],
    "sft": ["sft.py"],
    "sft_real": ["sft_real.py"],
    "mfu": ["mfu.py"],
    "data": ["data.py"],
    "data_scale": ["data_scale.py"],
    "methods": ["methods.py"],
    "evaluator": ["evaluator.py"],
    "preference_packing": ["preference_packing.py"],
}
QUICK = {"sft": ["--steps", "20", "--repeats", "1"], "data_scale": ["--sizes", "1000,10000,100000", "--before", "1000"],
         "startup": ["--repeats", "1"], "sft_real": ["--steps", "8", "--warmup", "4"], "mfu": ["--steps", "4"]}
SMOKE = {"sft_real": ["--smoke"], "mfu": ["--smoke"]}
"""What --smoke passes: each of these benchmarks on a tiny model; the others run as they are."""

GOALS: list[tuple[str, str, tuple[str, ...], str, Any]] = [
    # (label, section, path to the figure, goal as printed, test; None: reported, no goal)
    ("B1 ftx SFT speed / TRL SFTTrainer", "B1_sft", ("ftx_over_trl",), ">= 1.0", lambda v: v >= 1.0),
    ("B1 ftx SFT speed / hand-written loop", "B1_sft", ("ftx_over_loop",), ">= 0.9", lambda v: v >= 0.9),
    ("B1 ftx LoRA speed / TRL SFTTrainer LoRA (CPU)", "B1_sft", ("lora_ftx_over_trl",), ">= 1.15",
     lambda v: v >= 1.15),
    ("data loading / step time", "B1_sft", ("data_loading_share",), "< 5%", lambda v: v < 0.05),
    ("B1 SmolLM2 LoRA: ftx / TRL, both at TRL's defaults (speed)", "B1_smollm2", ("ftx_over_trl_defaults",), ">= 1.0",
     lambda v: v >= 1.0),
    ("B1 SmolLM2 LoRA: ftx recommended / TRL defaults (useful tokens/s)", "B1_smollm2",
     ("recommended_over_trl_defaults",), ">= 1.3", lambda v: v >= 1.3),
    ("B7 MFU full fine-tuning (ftx GFLOP/s / GEMM peak GFLOP/s)", "B7_mfu", ("full_mfu",), ">= 0.5",
     lambda v: v >= 0.5),
    ("B7 MFU LoRA r=16 (ftx GFLOP/s / GEMM peak GFLOP/s)", "B7_mfu", ("lora_mfu",), "reported", None),
    ("B7 full fine-tuning, precision = bf16: speed / fp32", "B7_mfu", ("full_bf16_speedup_over_fp32",), "reported",
     None),
    ("B7 MFU full, precision = bf16 (ftx GFLOP/s / bf16 GEMM peak)", "B7_mfu", ("full_bf16_mfu",), "reported", None),
    ("1-step ftx run / plain transformers script (median)", "startup", ("ftx_over_plain",), "<= 1.2",
     lambda v: v <= 1.2),
    ("B2 packed / unpacked useful tokens/s", "data", ("packed_over_unpacked",), ">= 1.5", lambda v: v >= 1.5),
    ("B3 ftx --help (s)", "B3_cli", ("ftx --help",), "< 0.5", lambda v: v < 0.5),
    ("B3 ftx plugins (s)", "B3_cli", ("ftx plugins",), "< 0.5", lambda v: v < 0.5),
    ("B3 ftx validate (s)", "B3_cli", ("ftx validate",), "< 0.5", lambda v: v < 0.5),
    ("B4 QLoRA linear bytes / bf16", "methods", ("qlora_linear_bytes_over_bf16",), "<= 0.27", lambda v: v <= 0.27),
    ("B5 LoRA trainable state / full", "methods", ("lora_trainable_state_over_full",), "<= 0.05", lambda v: v <= 0.05),
    ("B6 second / first data preparation", "data", ("prepare_second_over_first",), "<= 0.1", lambda v: v <= 0.1),
    ("B8 data preparation per row: before / now (worst size)", "B8_data_scale", ("per_row_speedup_worst",), ">= 10",
     lambda v: v >= 10),
    ("B8 peak RSS: largest size / 1k rows", "B8_data_scale", ("peak_rss_over_smallest",), "<= 1.5", lambda v: v <= 1.5),
    ("B8 cache hit / first preparation (worst size)", "B8_data_scale", ("hit_over_first_worst",), "< 0.1",
     lambda v: v < 0.1),
    ("evaluator generation: batched / one by one", "evaluator", ("batched_speedup",), ">= 3", lambda v: v >= 3),
    ("DPO packed / unpacked useful tokens/s (real pairs)", "preference_packing", ("packed_over_unpacked",), ">= 1.5",
     lambda v: v >= 1.5),
]


def _mfu_shown(kind: str, peak: str = "gemm_peak_gflops") -> Any:
    return lambda s: (f"{s[kind + '_mfu']:.3f} ({s[kind + '_gflops']:.1f} / {s[peak]:.1f} GFLOP/s, "
                      f"{s['threads']} threads)")


SHOWN: dict[tuple[str, str], Any] = {("B7_mfu", "full_mfu"): _mfu_shown("full"),
                                     ("B7_mfu", "lora_mfu"): _mfu_shown("lora"),
                                     ("B7_mfu", "full_bf16_mfu"): _mfu_shown("full_bf16", "gemm_peak_gflops_bf16")}
"""Figures shown with more than the ratio, by (section, key): B7's MFU with ftx's GFLOP/s and the GEMM peak."""


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """One row per goal: the figure as measured in this job, or 'not run'."""
    rows = []
    for label, section, path, goal, holds in GOALS:
        value: Any = results.get(section, {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)):
            rows.append((label, "not run", goal, "-"))
            continue
        shown = f"{value:.2%}" if goal.endswith("%") else f"{value:.3f}"
        if (section, path[-1]) in SHOWN:
            shown = SHOWN[(section, path[-1])](results[section])
        if results[section].get("smoke"):
            shown += " SMOKE"
        rows.append((label, shown, goal, "-" if holds is None else "yes" if holds(value) else "NO"))
    return rows


def print_data_scale(results: dict[str, Any]) -> None:
    """B8's table (time and peak RSS per size, first preparation and cache hit) again beside the summary."""
    figures = results.get("B8_data_scale")
    if not figures or not figures.get("rows"):
        print("\nB8 data preparation: not run")
        return
    from data_scale import print_table as print_b8

    print_b8(figures["rows"], figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny-model runs of the benchmarks that have them")
    parser.add_argument("--gpu-smoke", action="store_true", help="also run bench/gpu.py --smoke (tiny shapes)")
    parser.add_argument("only", nargs="*", choices=[*SUITE, []], help="run only these benchmarks")
    args = parser.parse_args()
    if RESULTS.exists():
        RESULTS.unlink()
    failures = []
    suite = {**SUITE, **({"gpu-smoke": ["gpu.py", "--smoke"]} if args.gpu_smoke else {})}
    started_all = time.perf_counter()
    for name, script in suite.items():
        if args.only and name not in args.only and name != "gpu-smoke":
            continue
        extra = (QUICK.get(name, []) if args.quick else []) + (SMOKE.get(name, []) if args.smoke else [])
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(BENCH / script[0]), *script[1:], *extra], cwd=BENCH)
        print(f"[{name}: {time.perf_counter() - started:.0f}s, exit {code}]")
        if code:
            failures.append(name)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    rows = summary_rows(results)
    print_data_scale(results)
    print_table(f"Every goal, measured in this job ({time.perf_counter() - started_all:.0f} s)", rows)
    print(f"\nall figures: {RESULTS}")
    if any(row[3] == "NO" for row in rows):
        print("some goals do not hold: see bench/RESULTS.md for what limits them")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
