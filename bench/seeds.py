"""Do a recipe's quoted figures hold for the user who reruns it? Runs recipes at several seeds and torch
thread counts and prints each run's task figure before and after, and the worst case.

    python bench/seeds.py recipes/lora.toml recipes/qlora.toml [--seeds 1 2 3] [--threads 1 2] [--metric exact-match.exact_match]

Every run is a fresh `ftx run` process with `--set train.seed=S --set train.threads=T`; results are merged
into bench/results.json under "seeds" and the table is what recipe comments and bench/RESULTS.md quote.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, merge_results, print_table


def _figure(metrics: dict, when: str, metric: str) -> float | None:
    evaluator, _, key = metric.partition(".")
    value = metrics.get(when, {}).get(evaluator, {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _forgetting(metrics: dict) -> dict:
    """The forgetting check's verdict and general-text perplexity before/after (empty when it did not run)."""
    check = metrics.get("forgetting") or {}
    if "flagged" not in check:
        return {}
    return {"forgetting": check["flagged"], "general_ppl": [round(check["before_perplexity"], 2),
                                                           round(check["after_perplexity"], 2)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--metric", default="exact-match.exact_match")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set for every run")
    args = parser.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            runs = []
            for seed in args.seeds:
                for threads in args.threads:
                    out = Path(tmp) / f"{Path(recipe).stem}-{seed}-{threads}"
                    sets = [f"train.seed={seed}", f"train.threads={threads}", *args.overrides]
                    command = [sys.executable, "-m", "ftx.cli", "run", str(REPO / recipe), "--output", str(out)]
                    for item in sets:
                        command += ["--set", item]
                    started = time.perf_counter()
                    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                    seconds = time.perf_counter() - started
                    if done.returncode != 0:
                        print(done.stderr[-2000:], file=sys.stderr)
                        runs.append({"seed": seed, "threads": threads, "error": done.returncode})
                        continue
                    metrics = json.loads((out / "metrics.json").read_text())
                    run = {"seed": seed, "threads": threads, "seconds": round(seconds, 1),
                           "before": _figure(metrics, "before", args.metric), "after": _figure(metrics, "after", args.metric),
                           **_forgetting(metrics)}
                    runs.append(run)
                    print(json.dumps({"recipe": recipe, **run}), flush=True)
            afters = [r["after"] for r in runs if r.get("after") is not None]
            results[recipe] = {"runs": runs, "worst_after": min(afters) if afters else None}
            rows += [(f"{recipe} seed {r['seed']} threads {r['threads']}",
                      f"{r.get('before')} -> {r.get('after')} ({r.get('seconds', '-')} s)", "", "") for r in runs]
            rows.append((f"{recipe} worst after", f"{results[recipe]['worst_after']}", "", ""))
    merge_results("seeds", results)
    print_table(f"{args.metric} at seeds {args.seeds} x threads {args.threads}", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
