"""``ftx plan`` against the measured peak memory of the real model: SmolLM2-135M-Instruct, full / LoRA / QLoRA.

    python bench/plan_smollm2.py [--steps 2] [--batch-size 8] [--length 128] [--threads 1]

For each method, the estimate ``ftx plan`` prints for a recipe and the peak RSS of ``ftx run`` of the same
recipe in its own process (``figures.peak_rss_mib`` of its metrics.json: VmHWM, the process's high-water
mark), as estimated ÷ measured. Goal: within 30% either way. The recipes are recipes/smollm2-lora.toml's
shape (float32, batch 8 x 128 tokens, LoRA r=16 alpha=32 on every linear layer, dropout 0) and QLoRA's
defaults (NF4, double quantisation, gradient checkpointing); the rows are English text longer than 128
tokens, so every sequence fills max_length: the worst case the plan estimates (short rows padded to
their batch's longest hold less). The GGUF file (../shared/models) is converted before the first run, so
no run's peak includes the conversion. Prints a table and merges the figures into bench/results.json under
"plan_smollm2".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, merge_results, print_table  # noqa: E402

GGUF = REPO.parent / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MARGIN = 0.3
"""The plan may differ from the measured peak by this share of the peak."""
METHODS: dict[str, dict[str, Any]] = {
    "full": {"use": "full"},
    "lora": {"use": "lora", "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
    "qlora": {"use": "qlora", "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
}
"""The method tables compared (recipes/smollm2-lora.toml's adapters; QLoRA's other options at their defaults)."""


def write_rows(path: Path) -> Path:
    """60 distinct passages of 12 routing messages each (~200 tokens, more than any max_length measured here)."""
    from ftx.demo_data import routing_rows, write_jsonl

    messages = [row["messages"][0]["content"] for row in routing_rows(720, seed=5)]
    return write_jsonl([{"text": " ".join(messages[i:i + 12])} for i in range(0, 720, 12)], path)


def recipe_tables(method: str, rows: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A recipe that trains ``method`` for ``args.steps`` steps with no evaluation: only training's memory counts."""
    return {
        "model": {"name": str(GGUF), "dtype": "float32"},
        "data": {"format": "text", "train": str(rows), "eval": 0.1, "max_length": args.length},
        "method": dict(METHODS[method]),
        "objective": {"use": "text"},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "lr": 1e-4, "log_every": 1,
                  "threads": args.threads},
        "evaluation": {"samples": 0, "forgetting": False},
    }


def planned_mib(recipe: Path) -> float:
    """``ftx plan``'s total for ``recipe`` on the CPU, in MiB."""
    from ftx.api import plugin_manager
    from ftx_plan.estimate import plan_report

    loaded = plugin_manager().load_recipe(recipe)
    return float(plan_report(loaded, "cpu")["estimate"]["total_bytes"]) / 2**20


def measured(recipe: Path, out: Path, threads: int) -> dict[str, float]:
    """``ftx run`` of ``recipe`` in its own process: its peak RSS (MiB) and training seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "ftx.cli", "run", str(recipe), "--output", str(out), "--overwrite"],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"ftx run {recipe.name} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"peak_rss_mib": metrics["figures"]["peak_rss_mib"], "train_seconds": metrics["train"]["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from full,lora,qlora")
    args = parser.parse_args()
    if not GGUF.is_file():
        raise SystemExit(f"SmolLM2 GGUF not available at {GGUF} (only in ftx's development checkout)")
    from ftx.models.loading import resolve_model_path
    from ftx.recipe.schema import ModelSection
    from ftx.testing import recipe_text

    resolve_model_path(ModelSection(name=str(GGUF)))  # the conversion, once, outside every measured run
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ftx-plan-smollm2-") as tmp:
        rows = write_rows(Path(tmp) / "text.jsonl")
        for method in args.methods.split(","):
            recipe = Path(tmp) / f"{method}.toml"
            recipe.write_text(recipe_text(recipe_tables(method, rows, args)), encoding="utf-8")
            run = measured(recipe, Path(tmp) / f"run-{method}", args.threads)
            plan = planned_mib(recipe)
            figures[method] = {"plan_mib": round(plan, 1), **run,
                               "plan_over_measured": round(plan / run["peak_rss_mib"], 3)}
    merge_results("plan_smollm2", {
        "model": GGUF.name,
        "setup": {"steps": args.steps, "batch_size": args.batch_size, "length": args.length, "threads": args.threads,
                  "methods": {m: METHODS[m] for m in figures}, "rows": "text longer than length (worst case)"},
        "methods": figures,
        "goal": f"plan within {MARGIN:.0%} of the measured peak RSS",
    })
    print_table(f"ftx plan vs measured peak RSS, SmolLM2-135M (cpu, batch {args.batch_size} x {args.length}, "
                f"{args.steps} steps, {args.threads} thread(s))", [
        (f"{method}: plan / peak RSS", f"{f['plan_over_measured']:.2f} ({f['plan_mib'] / 1024:.2f} / "
         f"{f['peak_rss_mib'] / 1024:.2f} GiB)", f"1 ± {MARGIN}",
         "yes" if abs(f["plan_over_measured"] - 1) <= MARGIN else "NO")
        for method, f in figures.items()
    ])


if __name__ == "__main__":
    main()
