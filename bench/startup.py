"""Start-up cost: a 1-step `ftx run` ÷ a plain transformers script doing the same work (load the quickstart's
built-in model and 200 rows, tokenise, one optimizer step, save the model), each a fresh process.

    python bench/startup.py [--repeats 3]

Both sides are whole processes timed from outside (interpreter start to exit), run alternately, so
machine load touches both alike; the figures are the median and the worst ratio of the pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, merge_results, print_table

DATA = REPO / "recipes" / "data" / "reverse.jsonl"
ROWS = 200

RECIPE = """
[model]
name = "builtin:tiny-llama"
[data]
format = "alpaca"
train = "{data}"
eval = 0.1
max_length = 64
[method]
use = "full"
[objective]
use = "sft"
[train]
max_steps = 1
batch_size = 32
[evaluation]
samples = 0
forgetting = false
"""

PLAIN = r'''
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from ftx.models.loading import resolve_model_path
from ftx.recipe.schema import ModelSection

path = resolve_model_path(ModelSection(name="builtin:tiny-llama"))
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
rows = [json.loads(line) for line in open(sys.argv[1])]
texts = [tokenizer.apply_chat_template([{"role": "user", "content": r["instruction"] + "\n\n" + r["input"]},
                                        {"role": "assistant", "content": r["output"]}], tokenize=False) for r in rows]
batch = tokenizer(texts[:32], return_tensors="pt", padding=True)
labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model(**batch, labels=labels).loss.backward()
optimizer.step()
model.save_pretrained(sys.argv[2])
tokenizer.save_pretrained(sys.argv[2])
'''


def _seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "rows.jsonl"
        data.write_text("".join(DATA.read_text().splitlines(keepends=True)[:ROWS]))
        recipe = folder / "r.toml"
        recipe.write_text(RECIPE.format(data=data))
        script = folder / "plain.py"
        script.write_text(PLAIN)
        subprocess.run([sys.executable, str(script), str(data), str(folder / "warm")], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # builds the built-in model once
        ftx_times, plain_times = [], []
        for i in range(args.repeats):
            ftx_times.append(_seconds([sys.executable, "-m", "ftx.cli", "run", str(recipe), "--output",
                                       str(folder / f"run{i}")], env))
            plain_times.append(_seconds([sys.executable, str(script), str(data), str(folder / f"plain{i}")], env))
    ratios = [f / p for f, p in zip(ftx_times, plain_times)]
    figures = {"ftx_seconds": round(statistics.median(ftx_times), 2),
               "plain_seconds": round(statistics.median(plain_times), 2),
               "ftx_over_plain": round(statistics.median(ratios), 3), "worst_ftx_over_plain": round(max(ratios), 3)}
    merge_results("startup", figures)
    print_table("1-step run, whole process", [
        ("ftx run (s, median)", f"{figures['ftx_seconds']:.2f}", "", ""),
        ("plain transformers script (s, median)", f"{figures['plain_seconds']:.2f}", "", ""),
        ("ftx / plain (median of pairs)", f"{figures['ftx_over_plain']:.3f}", "<= 1.2",
         "yes" if figures["ftx_over_plain"] <= 1.2 else "NO"),
        ("ftx / plain (worst pair)", f"{figures['worst_ftx_over_plain']:.3f}", "", ""),
    ])
    return figures


if __name__ == "__main__":
    main()
