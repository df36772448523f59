"""`[train] compile = true` (torch.compile through transformers) ÷ eager: steady-state seconds per step of the
same ftx SFT run (bench/sft.py's workload), compilation excluded, and the one-time compile cost.

    python bench/compile.py [--model builtin:small-llama] [--steps 60]

Both runs in this one job; the figure is eager seconds per step ÷ compiled (above 1: compile pays).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import merge_results, print_table
from sft import run_ftx


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:small-llama")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    from ftx.api import quiet_libraries

    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        eager = run_ftx(args.model, args.steps, Path(tmp))
        eager_wall = time.perf_counter() - started
        started = time.perf_counter()
        compiled = run_ftx(args.model, args.steps, Path(tmp), overrides=("train.compile=true",))
        compiled_wall = time.perf_counter() - started
    figures = {"eager_seconds_per_step": round(eager, 4), "compiled_seconds_per_step": round(compiled, 4),
               "compiled_speedup": round(eager / compiled, 3), "eager_wall": round(eager_wall, 1),
               "compiled_wall": round(compiled_wall, 1)}
    merge_results("compile", figures)
    print_table(f"torch.compile on {args.model} ({args.steps} steps)", [
        ("eager s/step", f"{eager:.4f}", "", ""), ("compiled s/step", f"{compiled:.4f}", "", ""),
        ("eager / compiled", f"{eager / compiled:.3f}", "> 1 pays", "yes" if eager > compiled else "NO"),
        ("wall: eager / compiled run (s)", f"{eager_wall:.0f} / {compiled_wall:.0f}", "", ""),
    ])
    return figures


if __name__ == "__main__":
    main()
