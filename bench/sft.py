"""B1: ftx SFT training speed ÷ a plain TRL SFTTrainer script ÷ a hand-written PyTorch loop,
on the same model, data, batch size, sequence length and steps; the same for LoRA (r=16, all linear
layers) against TRL with a peft config; and data loading ÷ step time.

    python bench/sft.py [--model builtin:small-llama] [--steps 40] [--repeats 2]

Each figure is a ratio measured in this one job (the runs are interleaved and the best of each is
kept), so machine load affects all sides alike. Every side is timed the same way: seconds per step
from step 10 to the last, by timestamps taken as each logged step ends, so process start-up,
model loading and the first steps' allocations are left out of all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, merge_results, print_table, steady_seconds_per_step

DATA = REPO / "recipes" / "data" / "reverse.jsonl"
ROWS = 1024
MAX_LENGTH = 64
BATCH = 16
LR = 1e-4
LOG_EVERY = 5
WARMUP = 10


def _examples() -> list[Any]:
    from ftx_formats import AlpacaOptions
    from ftx_formats.converters import Alpaca

    fmt = Alpaca(AlpacaOptions())
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:ROWS]]
    return [fmt.to_example(r) for r in rows]


LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
"""The LoRA setting of both sides of the LoRA comparison (all linear layers)."""


def run_ftx(model: str, steps: int, workdir: Path, method: str = "full", overrides: tuple[str, ...] = ()) -> float:
    """Seconds per step of ftx's training (the sft objective on Trainer, with ftx's guards)."""
    from ftx.plugins import make_plugin_manager
    from ftx.runner import run_recipe
    from ftx_hookspecs import hookimpl

    clock: list[tuple[int, float]] = []

    class StepClock:
        @hookimpl
        def ftx_log_metrics(self, run: Any, step: int, metrics: Any) -> None:
            if "loss" in metrics:
                clock.append((step, time.perf_counter()))

    recipe = workdir / "bench.toml"
    lora_lines = ("".join(f"{k} = {v}\n" for k, v in LORA.items()) + 'target_modules = "all-linear"\n'
                  if method == "lora" else "")
    recipe.write_text(
        f'[model]\nname = "{model}"\n[data]\nformat = "alpaca"\ntrain = "{DATA}"\nlimit = {ROWS + 10}\neval = 0.01\n'
        f'max_length = {MAX_LENGTH}\n[method]\nuse = "{method}"\n{lora_lines}[objective]\nuse = "sft"\n'
        f"[train]\nmax_steps = {steps}\nbatch_size = {BATCH}\nlr = {LR}\nlog_every = {LOG_EVERY}\nseed = 1\n"
        "[evaluation]\nforgetting = false\nsamples = 0\n"
    )
    manager = make_plugin_manager(extra_plugins=[StepClock()])
    out = workdir / f"run-{time.time_ns()}"
    run_recipe(manager.load_recipe(recipe, overrides), manager, output=out, echo=lambda _m: None)
    return steady_seconds_per_step(clock, WARMUP)[0] if steps > WARMUP else 0.0


def _model_and_tokenizer(model: str) -> tuple[Any, Any]:
    from ftx.models.loading import resolve_model_path
    from ftx.recipe.schema import ModelSection
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(ModelSection(name=model))
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def run_trl(model_name: str, steps: int, workdir: Path, method: str = "full") -> float:
    """Seconds per step of ``SFTTrainer.train()`` on the same rows as prompt/completion conversations."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    clock: list[tuple[int, float]] = []

    class StepClock(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                clock.append((state.global_step, time.perf_counter()))

    torch.manual_seed(1)
    model, tokenizer = _model_and_tokenizer(model_name)
    rows = [{"prompt": ex.messages[:-1], "completion": ex.messages[-1:]} for ex in _examples()]
    config = SFTConfig(
        output_dir=str(workdir / "trl"), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
        max_length=MAX_LENGTH, logging_steps=LOG_EVERY, save_strategy="no", report_to="none", use_cpu=True,
        seed=1, bf16=False, fp16=False, disable_tqdm=True, dataset_num_proc=None, optim="adamw_torch_fused",
        activation_checkpointing=False,  # TRL turns it on by default; ftx (and the loop) do not
    )
    peft_config = None
    if method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[StepClock()])
    trainer.train()
    return steady_seconds_per_step(clock, WARMUP)[0]


def run_loop(model_name: str, steps: int) -> tuple[float, float]:
    """Seconds per step of a hand-written loop (AdamW, linear decay, padded batches), and of its batch building
    alone, per step."""
    import torch
    from ftx.data.encode import tokenize_all
    from ftx.training import CausalLMCollator

    torch.manual_seed(1)
    model, tokenizer = _model_and_tokenizer(model_name)
    tokens = tokenize_all(tokenizer, _examples(), MAX_LENGTH)
    features = [{"input_ids": t.input_ids, "labels": t.labels} for t in tokens]
    collate = CausalLMCollator(tokenizer.pad_token_id)
    order = list(range(len(features)))
    random.Random(1).shuffle(order)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, fused=True)  # what ftx's 'auto' and TRL's default use
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / steps)
    model.train()
    collate_seconds = 0.0
    clock: list[tuple[int, float]] = []
    for step in range(steps):
        t0 = time.perf_counter()
        idx = [order[(step * BATCH + i) % len(order)] for i in range(BATCH)]
        batch = collate([features[i] for i in idx])
        collate_seconds += time.perf_counter() - t0
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % LOG_EVERY == 0:
            loss.item()  # what logging costs the other sides
            clock.append((step + 1, time.perf_counter()))
    return steady_seconds_per_step(clock, WARMUP)[0], collate_seconds / steps


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:small-llama")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ftx.training import quiet_libraries

    quiet_libraries()
    best: dict[str, float] = {k: float("inf") for k in ("ftx", "trl", "loop", "ftx_lora", "trl_lora")}
    collate = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_ftx(args.model, 2, work)  # build and cache the model, warm the code paths
        for _ in range(args.repeats):
            best["ftx"] = min(best["ftx"], run_ftx(args.model, args.steps, work))
            best["trl"] = min(best["trl"], run_trl(args.model, args.steps, work))
            best["ftx_lora"] = min(best["ftx_lora"], run_ftx(args.model, args.steps, work, "lora"))
            best["trl_lora"] = min(best["trl_lora"], run_trl(args.model, args.steps, work, "lora"))
            loop_seconds, collate_seconds = run_loop(args.model, args.steps)
            best["loop"] = min(best["loop"], loop_seconds)
            collate = min(collate, collate_seconds)
    ratio_trl = best["trl"] / best["ftx"]
    ratio_loop = best["loop"] / best["ftx"]
    ratio_lora = best["trl_lora"] / best["ftx_lora"]
    data_share = collate / best["ftx"]
    figures = {
        "model": args.model, "steps": args.steps, "batch_size": BATCH, "max_length": MAX_LENGTH,
        "seconds_per_step": {k: round(v, 4) for k, v in best.items()}, "timed_steps": args.steps - WARMUP,
        "ftx_over_trl": round(ratio_trl, 3), "ftx_over_loop": round(ratio_loop, 3),
        "lora_ftx_over_trl": round(ratio_lora, 3), "lora": LORA,
        "data_loading_share": round(data_share, 4),
    }
    print_table(f"B1: SFT training speed, {args.model}, {args.steps} steps x {BATCH} x <= {MAX_LENGTH} tokens", [
        ("ftx / TRL SFTTrainer (speed)", f"{ratio_trl:.2f}", ">= 1.0", "yes" if ratio_trl >= 1.0 else "NO"),
        ("ftx / hand-written loop (speed)", f"{ratio_loop:.2f}", ">= 0.9", "yes" if ratio_loop >= 0.9 else "NO"),
        ("ftx LoRA / TRL SFTTrainer LoRA (speed, CPU)", f"{ratio_lora:.2f}", ">= 1.15",
         "yes" if ratio_lora >= 1.15 else "NO"),
        ("data loading / step time", f"{data_share:.2%}", "< 5%", "yes" if data_share < 0.05 else "NO"),
    ])
    merge_results("B1_sft", figures)
    return figures


if __name__ == "__main__":
    sys.exit(main() and 0)
