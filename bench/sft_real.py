"""B1 on the real model: ftx ÷ a plain TRL SFTTrainer script on SmolLM2-135M-Instruct, same data, one job.

    python bench/sft_real.py [--steps 12] [--warmup 4] [--repeats 1] [--full] [--threads N] [--fp32] [--smoke]

LoRA r=16 on all linear layers (what users pick on this model on a CPU; --full adds full fine-tuning),
alpaca rows from ../shared/data (real instructions of varied length), max_length 512, batch 8. Two figures:

(i)  at TRL's defaults: ftx set to what the installed TRL's ``SFTConfig`` does by default (read at run
     time: activation checkpointing on, no packing, bf16 autocast (its default, on a CPU too), its learning
     rate, optimizer, schedule, clipping) ÷
     ``SFTTrainer`` at its defaults: seconds per step, goal >= 1.0.
(ii) ftx's recommended settings (its own defaults with ``[data] packing = true``, no activation
     checkpointing, ``[train] precision = "bf16"`` where the CPU has bf16 units) ÷ TRL at its defaults, as
     useful (non-padding) tokens per second, goal >= 1.3.

Both sides read the same training rows in the same order with the same sampler seed (42, both
defaults), so they draw the same batches; the tokens per step of each side are reported as the check.
What TRL is given beyond its defaults is the workload (max_steps, max_length, batch size), the clock
(logging every 2 steps) and ``use_cpu=True``. ``--fp32`` pins every side to fp32 instead (TRL's ``bf16=False``,
ftx's ``precision = "fp32"``).
Steps are timed as each logged step ends, leaving out the first ``--warmup``. Tokens: ftx's collators
count each batch's real tokens; TRL logs its own ``num_tokens`` (the attention mask's sum).
--smoke runs the same code on builtin:small-llama at tiny sizes. Merges into bench/results.json
under "B1_smollm2" (the top-level ratios are LoRA's; --full adds a "full" section beside "lora").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, ftx_steady_run, load_average, merge_results, method_table, print_table, steady_window

SHARED = REPO.parent / "shared"
GGUF = SHARED / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
ALPACA = SHARED / "data" / "alpaca_tiny.json"
GENERATED = REPO / "recipes" / "data" / "reverse.jsonl"
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
"""Both sides' LoRA (peft's defaults for alpha and dropout as users copy them), on every linear layer."""
LOG_EVERY = 2
EVAL_ROWS = 2


def alpaca_rows(n: int) -> tuple[list[dict[str, str]], str]:
    """``n`` alpaca rows: the real ones (numbered variants once they run out), else ftx's generated rows."""
    if ALPACA.exists():
        base, source = json.loads(ALPACA.read_text(encoding="utf-8")), "alpaca_tiny.json (real rows)"
    else:
        base = [json.loads(line) for line in GENERATED.read_text(encoding="utf-8").splitlines()]
        source = "recipes/data/reverse.jsonl (ftx's generated rows)"
    rows = []
    for i in range(n):
        row, k = base[i % len(base)], i // len(base)
        rows.append({"instruction": row["instruction"] + (f" (variant {k})" if k else ""),
                     "input": row.get("input", ""), "output": row["output"]})
    return rows, source


def trl_defaults() -> dict[str, Any]:
    """What the installed TRL's ``SFTConfig`` trains with when a user sets nothing (on a CPU: ``use_cpu``)."""
    from trl import SFTConfig

    with tempfile.TemporaryDirectory() as tmp:
        c = SFTConfig(output_dir=tmp, use_cpu=True)
    return {"lr": c.learning_rate, "optimizer": str(getattr(c.optim, "value", c.optim)),
            "scheduler": str(getattr(c.lr_scheduler_type, "value", c.lr_scheduler_type)),
            "weight_decay": c.weight_decay, "max_grad_norm": c.max_grad_norm, "warmup_steps": c.warmup_steps,
            "gradient_checkpointing": bool(c.gradient_checkpointing), "packing": bool(c.packing),
            "padding_free": bool(c.padding_free), "batch_size": c.per_device_train_batch_size,
            "max_length": c.max_length, "bf16": bool(c.bf16), "seed": c.seed}


def ftx_recipe(model: str, train: Path, evals: Path, method: str, args: argparse.Namespace,
               trl: dict[str, Any] | None) -> str:
    """ftx's recipe for the workload: at TRL's defaults when ``trl`` is given, else ftx's recommended settings."""
    threads = f"threads = {args.threads}\n" if args.threads else ""
    if trl is None:
        data_extra, train_extra = "packing = true\n", f'precision = "{recommended_precision(args)}"\n'
    else:
        if trl["warmup_steps"] >= 1 or trl["padding_free"]:
            raise RuntimeError(f"TRL's defaults changed (warmup_steps, padding_free): map them to ftx here: {trl}")
        data_extra = f"packing = {str(trl['packing']).lower()}\n"
        train_extra = (f"lr = {trl['lr']}\noptimizer = \"{trl['optimizer']}\"\nscheduler = \"{trl['scheduler']}\"\n"
                       f"weight_decay = {trl['weight_decay']}\nmax_grad_norm = {trl['max_grad_norm']}\n"
                       f"warmup_ratio = {float(trl['warmup_steps'])}\nseed = {trl['seed']}\n"
                       f"gradient_checkpointing = {str(trl['gradient_checkpointing']).lower()}\n"
                       f'precision = "{"bf16" if trl_bf16(trl, args) else "fp32"}"\n')
    return (f'[model]\nname = "{model}"\n[data]\nformat = "alpaca"\ntrain = "{train}"\neval = "{evals}"\n'
            f'max_length = {args.max_length}\n{data_extra}{method_table(method, LORA)}[objective]\nuse = "sft"\n'
            f"[train]\nmax_steps = {args.steps}\nbatch_size = {args.batch}\nlog_every = {LOG_EVERY}\n"
            f"{threads}{train_extra}"
            "[evaluation]\nforgetting = false\nsamples = 0\n")


def trl_bf16(trl: dict[str, Any], args: argparse.Namespace) -> bool:
    """Whether TRL's side runs in bf16 autocast: its default, unless --fp32."""
    return bool(trl["bf16"]) and not args.fp32


def recommended_precision(args: argparse.Namespace) -> str:
    """ftx's recommended precision here: bf16 autocast on a CPU with bf16 units (about 2x fp32), else fp32."""
    import torch

    return "bf16" if not args.fp32 and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def run_trl(model_path: str, rows: list[dict[str, str]], method: str, args: argparse.Namespace,
            workdir: Path, bf16: bool) -> dict[str, float]:
    """A plain TRL script: ``SFTTrainer`` at its defaults on the rows as prompt/completion conversations."""
    import torch
    from datasets import Dataset
    from ftx_formats import AlpacaOptions
    from ftx_formats.converters import Alpaca
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    clock: list[tuple[int, float]] = []
    seen: dict[int, float] = {}

    class StepClock(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                clock.append((state.global_step, time.perf_counter()))
                seen[state.global_step] = float(logs.get("num_tokens", "nan"))

    fmt = Alpaca(AlpacaOptions())
    examples = [fmt.to_example(r) for r in rows]
    dataset = Dataset.from_list([{"prompt": ex.messages[:-1], "completion": ex.messages[-1:]} for ex in examples])
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    config = SFTConfig(
        output_dir=str(workdir / f"trl-{time.time_ns()}"), max_steps=args.steps, max_length=args.max_length,
        per_device_train_batch_size=args.batch, logging_steps=LOG_EVERY, use_cpu=True, bf16=bf16,
        save_strategy="no", report_to="none", disable_tqdm=True,
    )
    peft_config = None
    if method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[StepClock()])
    trainer.train()
    s0, s1, seconds = steady_window(clock, args.warmup)
    return {"seconds_per_step": seconds / (s1 - s0), "tokens_per_step": (seen[s1] - seen[s0]) / (s1 - s0),
            "timed_steps": s1 - s0}


def measure(method: str, model: str, model_path: str, rows: list[dict[str, str]], trl: dict[str, Any],
            args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The three sides for one method, interleaved ``--repeats`` times; the fastest run of each side is kept."""
    train, evals = work / "train.jsonl", work / "eval.jsonl"
    recipes = {"ftx_trl_defaults": work / f"{method}-trl-defaults.toml", "ftx_recommended": work / f"{method}-rec.toml"}
    recipes["ftx_trl_defaults"].write_text(ftx_recipe(model, train, evals, method, args, trl))
    recipes["ftx_recommended"].write_text(ftx_recipe(model, train, evals, method, args, None))
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        runs = {name: ftx_steady_run(path, work / f"run-{time.time_ns()}", args.warmup)
                for name, path in recipes.items()}
        runs["trl_defaults"] = run_trl(model_path, rows, method, args, work, trl_bf16(trl, args))
        for name, run in runs.items():
            if name not in best or run["seconds_per_step"] < best[name]["seconds_per_step"]:
                best[name] = run
    for run in best.values():
        run["tokens_per_second"] = run["tokens_per_step"] / run["seconds_per_step"]
    trl_run, ftx_run, rec = best["trl_defaults"], best["ftx_trl_defaults"], best["ftx_recommended"]
    return {
        **{name: {k: round(v, 4) for k, v in run.items()} for name, run in best.items()},
        "ftx_over_trl_defaults": round(trl_run["seconds_per_step"] / ftx_run["seconds_per_step"], 3),
        "ftx_over_trl_defaults_tokens_per_second": round(ftx_run["tokens_per_second"] / trl_run["tokens_per_second"],
                                                         3),
        "recommended_over_trl_defaults": round(rec["tokens_per_second"] / trl_run["tokens_per_second"], 3),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(GGUF))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=4, help="steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: torch's own)")
    parser.add_argument("--full", action="store_true", help="also full fine-tuning (about 3x the time)")
    parser.add_argument("--fp32", action="store_true", help="every side in fp32 (TRL's default is bf16 autocast)")
    parser.add_argument("--smoke", action="store_true", help="builtin:small-llama at tiny sizes: checks the code")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.steps, args.warmup, args.batch, args.max_length = "builtin:small-llama", 6, 2, 4, 256
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from ftx.models.loading import resolve_model_path
    from ftx.recipe.schema import ModelSection
    from ftx.training import quiet_libraries

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = load_average()
    trl = trl_defaults()
    model_path = resolve_model_path(ModelSection(name=args.model))
    rows, source = alpaca_rows(max(100, args.steps * args.batch + 4) + EVAL_ROWS)
    rows, eval_rows = rows[:-EVAL_ROWS], rows[-EVAL_ROWS:]
    figures: dict[str, Any] = {
        "model": args.model, "smoke": args.smoke, "threads": torch.get_num_threads(), "steps": args.steps,
        "warmup": args.warmup, "repeats": args.repeats, "batch_size": args.batch, "max_length": args.max_length,
        "rows": len(rows), "data": source, "lora": LORA, "trl_sftconfig_defaults": trl, "trl_bf16": trl_bf16(trl, args),
        "recommended_precision": recommended_precision(args),
        "load_average_at_start": load,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for path, part in ((work / "train.jsonl", rows), (work / "eval.jsonl", eval_rows)):
            path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        for method in ("lora", "full") if args.full else ("lora",):
            figures[method] = measure(method, args.model, model_path, rows, trl, args, work)
    lora = figures["lora"]
    figures["ftx_over_trl_defaults"] = lora["ftx_over_trl_defaults"]
    figures["recommended_over_trl_defaults"] = lora["recommended_over_trl_defaults"]
    report(figures)
    merge_results("B1_smollm2", figures)
    return figures


def report(f: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str]] = []
    for method in ("lora", "full"):
        if method not in f:
            continue
        m = f[method]
        name = "LoRA r=16" if method == "lora" else "full"
        for side, label in (("trl_defaults", "TRL SFTTrainer, its defaults"),
                            ("ftx_trl_defaults", "ftx at TRL's defaults"),
                            ("ftx_recommended", f"ftx recommended (packing, {f['recommended_precision']})")):
            s = m[side]
            rows.append((f"{name}: {label}", f"{s['seconds_per_step']:.2f} s/step, {s['tokens_per_step']:.0f} tok/step",
                         "", f"{s['tokens_per_second']:.0f} tok/s"))
        a, b = m["ftx_over_trl_defaults"], m["recommended_over_trl_defaults"]
        rows.append((f"{name}: ftx / TRL, both at TRL's defaults (speed)", f"{a:.3f}", ">= 1.0",
                     "yes" if a >= 1.0 else "NO"))
        rows.append((f"{name}: ftx recommended / TRL defaults (useful tok/s)", f"{b:.3f}", ">= 1.3",
                     "yes" if b >= 1.3 else "NO"))
    smoke = " (SMOKE: does not count)" if f["smoke"] else ""
    precision = "TRL's defaults in bf16 autocast" if f["trl_bf16"] else "TRL's defaults in fp32 (--fp32)"
    print_table(f"B1 on {f['model']}: {f['batch_size']} x <= {f['max_length']} tokens, {f['steps']} steps "
                f"({f['warmup']} warm-up), {f['threads']} torch threads, {precision}{smoke}", rows)


if __name__ == "__main__":
    sys.exit(main() and 0)
