"""B7: CPU model-FLOPs utilisation: ftx's training FLOP/s on SmolLM2-135M against this machine's own fp32
matrix-multiply peak, measured in the same job at the same torch thread count, and where a step's time goes.

    python bench/mfu.py [--steps 5] [--warmup 2] [--batch 4] [--seq 512] [--threads N] [--smoke]

1. GEMM peak: square fp32 ``torch.matmul`` (n = 2048 and 4096), one warm-up, best of three; 2n^3 FLOPs each.
2. ftx trains SmolLM2-135M (the GGUF in ../shared/models, through ftx's cached folder) on batches of
   ``--batch`` rows of exactly ``--seq`` real tokens (long texts built from the alpaca rows in
   ../shared/data, the text objective, so no position is padding), full fine-tuning and LoRA (r=16, all
   linear layers). Steady seconds per step come from an ``ftx_log_metrics`` plugin (every step is logged;
   the first ``--warmup`` are left out). FLOPs per token, with N the parameters that multiply (every
   linear layer, the tied lm_head once), L layers, d hidden size, T sequence length:
   full = 6N + 12LdT (PaLM's convention); LoRA = 4N (forward, and input gradients through the frozen
   weights) + 6N_lora + 12LdT. MFU = achieved FLOP/s ÷ the GEMM peak; goal >= 0.5 for full fine-tuning.
3. Where a step goes: a plain forward/backward/clip/fused-AdamW step of the same model on the same batch,
   timed (2 steps after a warm-up) and then profiled (``torch.profiler``, 2 steps); each op's own CPU time
   is grouped into matmul, attention, loss, optimizer, elementwise/norm/activation and other.

4. On a CPU with bf16 units (AVX512-BF16, AMX) the same runs again with ``[train] precision = "bf16"``
   (autocast), against the bf16 GEMM peak; --no-bf16 skips them.

--smoke runs the same code on builtin:small-llama at tiny sizes (figures that do not count).
Merges into bench/results.json under "B7_mfu".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, ftx_steady_run, load_average, merge_results, method_table, print_table

SHARED = REPO.parent / "shared"
GGUF = SHARED / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
ALPACA = SHARED / "data" / "alpaca_tiny.json"
GENERATED = REPO / "recipes" / "data" / "reverse.jsonl"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
"""LoRA on every linear layer of the decoder (not the lm_head, as peft's 'all-linear')."""

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("optimizer", ("adam", "_foreach_", "optimizer.")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul",
                "aten::addmv", "aten::mv")),
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "flex_attention")),
    ("loss", ("log_softmax", "nll_loss", "cross_entropy")),
    ("elementwise/norm/activation", ("mul", "add", "sub", "div", "neg", "pow", "rsqrt", "sqrt", "mean", "silu",
                                     "sigmoid", "gelu", "exp", "tanh", "norm", "cos", "sin", "sum", "cat",
                                     "where", "fill", "clamp", "embedding", "reciprocal", "dropout")),
)
"""Op-name fragments (lower case) per group, first match wins: the optimizer's foreach/fused ops (gradient
clipping's included) before the elementwise ones they resemble; matmul names are matched whole. The
autograd engine's own events (``MulBackward0``, ``autograd::engine::evaluate_function: ...``; their kernels
are events of their own) are "other"."""


def gemm_gflops(n: int, repeats: int, dtype: str = "float32") -> float:
    """GFLOP/s of an n x n by n x n matmul in ``dtype``: one warm-up, then the best of ``repeats``."""
    import torch

    kind = getattr(torch, dtype)
    a, b, out = torch.randn(n, n, dtype=kind), torch.randn(n, n, dtype=kind), torch.empty(n, n, dtype=kind)
    torch.matmul(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def source_rows() -> tuple[list[dict[str, str]], str]:
    """Real alpaca rows where ../shared/data has them, else ftx's own generated alpaca rows."""
    if ALPACA.exists():
        return json.loads(ALPACA.read_text(encoding="utf-8")), "alpaca_tiny.json (100 real rows)"
    rows = [json.loads(line) for line in GENERATED.read_text(encoding="utf-8").splitlines()]
    return rows, "recipes/data/reverse.jsonl (ftx's generated rows)"


def long_texts(rows: list[dict[str, str]], count: int, chars: int) -> list[str]:
    """``count`` texts of at least ``chars`` characters: consecutive rows joined, each text starting further
    on; no blank lines, so the text format keeps each text whole (it splits at blank lines)."""
    texts = []
    for i in range(count):
        parts: list[str] = []
        k = i * 7
        while sum(len(p) for p in parts) < chars:
            row = rows[k % len(rows)]
            parts.append("\n".join(row[key].strip() for key in ("instruction", "input", "output") if row.get(key)))
            k += 1
        texts.append("\n".join(parts).replace("\n\n", "\n"))
    return texts


def recipe_text(model: str, data: Path, method: str, args: argparse.Namespace, precision: str = "fp32") -> str:
    """ftx's recipe: the text objective on the long texts, every step logged (the clock)."""
    threads = f"threads = {args.threads}\n" if args.threads else ""
    threads += f'precision = "{precision}"\n'
    return (f'[model]\nname = "{model}"\n[data]\nformat = "text"\ntrain = "{data}"\neval = 0.05\n'
            f'max_length = {args.seq}\n{method_table(method, LORA)}[objective]\nuse = "text"\n'
            f"[train]\nmax_steps = {args.steps}\nbatch_size = {args.batch}\nlog_every = 1\nseed = 1\n{threads}"
            "[evaluation]\nforgetting = false\nsamples = 0\n")


def matmul_shapes(model_path: str) -> dict[str, int]:
    """N (weights of every linear layer, the tied lm_head once), N_lora at LoRA's rank, layers and hidden size,
    from the model built on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    n = sum(m.weight.numel() for _, m in linears)
    n_lora = sum(LORA["r"] * (m.in_features + m.out_features) for name, m in linears if not name.endswith("lm_head"))
    return {"n_matmul_params": n, "n_lora_params": n_lora, "layers": config.num_hidden_layers,
            "hidden": config.hidden_size}


def flops_per_token(shapes: dict[str, int], seq: int) -> dict[str, float]:
    attention = 12 * shapes["layers"] * shapes["hidden"] * seq
    return {"full": 6 * shapes["n_matmul_params"] + attention,
            "lora": 4 * shapes["n_matmul_params"] + 6 * shapes["n_lora_params"] + attention}


def group_of(name: str) -> str:
    low = name.lower()
    if low.startswith("autograd::") or re.search(r"backward\d+$", low):
        return "other"
    for group, fragments in GROUPS:
        if group == "matmul":
            if low in fragments:
                return group
        elif any(f in low for f in fragments):
            return group
    return "other"


def plain_step_profile(model_name: str, model_path: str, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per plain full fine-tuning step (forward, backward, clip, fused AdamW) on one batch of the same
    texts, and the profiled step's own CPU time per op group, as shares."""
    import torch
    from ftx.models.loading import load_tokenizer
    from ftx.recipe.schema import ModelSection
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(ModelSection(name=model_name), model_path)
    ids = tokenizer(texts[: args.batch], truncation=True, max_length=args.seq, return_tensors="pt")["input_ids"]
    if ids.shape != (args.batch, args.seq):
        raise RuntimeError(f"texts too short: batch {tuple(ids.shape)}, expected {(args.batch, args.seq)}")
    batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, fused=True)  # ftx's 'auto' on CPU

    def step() -> None:
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    started = time.perf_counter()
    for _ in range(2):
        step()
    seconds = (time.perf_counter() - started) / 2
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        for _ in range(2):
            step()
        profiled = time.perf_counter() - started
    ops = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in ops)
    shares: dict[str, float] = {group: 0.0 for group, _ in GROUPS} | {"other": 0.0}
    for name, t in ops:
        shares[group_of(name)] += t / total
    top = sorted(ops, key=lambda o: -o[1])[:12]
    return {"plain_full_seconds_per_step": seconds, "profiled_seconds_per_step": profiled / 2,
            "breakdown": {k: round(v, 4) for k, v in shares.items()},
            "breakdown_top_ops": [{"op": name, "group": group_of(name), "share": round(t / total, 4)}
                                  for name, t in top]}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(GGUF))
    parser.add_argument("--steps", type=int, default=5, help="ftx steps per run (the first --warmup are not timed)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--gemm-sizes", default="2048,4096")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast runs ([train] precision)")
    parser.add_argument("--smoke", action="store_true", help="builtin:small-llama at tiny sizes: checks the code")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.steps, args.warmup, args.batch, args.seq, args.gemm_sizes = (
            "builtin:small-llama", 3, 1, 2, 64, "256,512")
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
    threads = torch.get_num_threads()
    load = load_average()
    gemm = {int(n): gemm_gflops(int(n), 3) for n in args.gemm_sizes.split(",")}
    peak = max(gemm.values())
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported() and not args.no_bf16
    peak_bf16 = max(gemm_gflops(int(n), 3, "bfloat16") for n in args.gemm_sizes.split(",")) if bf16 else None
    model_path = resolve_model_path(ModelSection(name=args.model))
    shapes = matmul_shapes(model_path)
    per_token = flops_per_token(shapes, args.seq)
    rows, source = source_rows()
    texts = long_texts(rows, max(40, 2 * args.steps * args.batch), 6 * args.seq)
    runs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "texts.jsonl"
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        for run in ("full", "lora", *(("full_bf16", "lora_bf16") if bf16 else ())):
            method, _, precision = run.partition("_")
            recipe = work / f"{run}.toml"
            recipe.write_text(recipe_text(args.model, data, method, args, precision or "fp32"))
            runs[run] = ftx_steady_run(recipe, work / f"run-{run}", args.warmup)
            if runs[run]["tokens_per_step"] != args.batch * args.seq:
                raise RuntimeError(f"{run}: {runs[run]['tokens_per_step']} tokens a step, expected "
                                   f"{args.batch * args.seq} (every position a real token)")
    plain = plain_step_profile(args.model, model_path, texts, args)
    tokens = args.batch * args.seq
    gflops = {m: per_token[m.partition("_")[0]] * tokens / runs[m]["seconds_per_step"] / 1e9 for m in runs}
    plain_gflops = per_token["full"] * tokens / plain["plain_full_seconds_per_step"] / 1e9
    figures: dict[str, Any] = {
        "model": args.model, "smoke": args.smoke, "threads": threads, "batch": args.batch, "seq": args.seq,
        "steps": args.steps, "warmup": args.warmup, "data": source, "load_average_at_start": load,
        "gemm_gflops_by_size": {str(n): round(v, 2) for n, v in gemm.items()}, "gemm_peak_gflops": round(peak, 2),
        **shapes, "flops_per_token": per_token,
        "full_seconds_per_step": round(runs["full"]["seconds_per_step"], 3), "full_gflops": round(gflops["full"], 2),
        "full_mfu": round(gflops["full"] / peak, 4),
        "lora_seconds_per_step": round(runs["lora"]["seconds_per_step"], 3), "lora_gflops": round(gflops["lora"], 2),
        "lora_mfu": round(gflops["lora"] / peak, 4), "timed_steps": runs["full"]["timed_steps"],
        "plain_full_seconds_per_step": round(plain["plain_full_seconds_per_step"], 3),
        "plain_full_gflops": round(plain_gflops, 2), "plain_full_mfu": round(plain_gflops / peak, 4),
        "profiled_seconds_per_step": round(plain["profiled_seconds_per_step"], 3),
        **({"gemm_peak_gflops_bf16": round(peak_bf16, 2),
            **{f"{m}_bf16_{k}": v for m in ("full", "lora") for k, v in (
                ("seconds_per_step", round(runs[f"{m}_bf16"]["seconds_per_step"], 3)),
                ("gflops", round(gflops[f"{m}_bf16"], 2)), ("mfu", round(gflops[f"{m}_bf16"] / peak_bf16, 4)),
                ("speedup_over_fp32", round(runs[m]["seconds_per_step"] / runs[f"{m}_bf16"]["seconds_per_step"], 3)))}}
           if peak_bf16 else {}),
        "breakdown": plain["breakdown"], "breakdown_top_ops": plain["breakdown_top_ops"],
    }
    report(figures)
    merge_results("B7_mfu", figures)
    return figures


def report(f: dict[str, Any]) -> None:
    gemm = ", ".join(f"n={n}: {v:.1f}" for n, v in f["gemm_gflops_by_size"].items())
    print_table(f"B7: model-FLOPs utilisation, {f['model']}, {f['batch']} x {f['seq']} real tokens a step, "
                f"{f['threads']} torch threads{' (SMOKE: does not count)' if f['smoke'] else ''}", [
        ("fp32 GEMM peak (GFLOP/s)", f"{f['gemm_peak_gflops']:.1f}", "", gemm),
        ("ftx full fine-tuning: s/step, GFLOP/s", f"{f['full_seconds_per_step']:.2f}, {f['full_gflops']:.1f}", "", ""),
        ("ftx full fine-tuning MFU (GFLOP/s / peak)", f"{f['full_mfu']:.3f}", ">= 0.5",
         "yes" if f["full_mfu"] >= 0.5 else "NO"),
        ("ftx LoRA r=16: s/step, GFLOP/s", f"{f['lora_seconds_per_step']:.2f}, {f['lora_gflops']:.1f}", "", ""),
        ("ftx LoRA MFU (actual FLOPs / peak)", f"{f['lora_mfu']:.3f}", "reported", ""),
        ("plain PyTorch full step: s/step, MFU", f"{f['plain_full_seconds_per_step']:.2f}, {f['plain_full_mfu']:.3f}",
         "", "same model and batch, no framework"),
        *([("bf16 GEMM peak (GFLOP/s)", f"{f['gemm_peak_gflops_bf16']:.1f}", "", "the CPU's bf16 units"),
           ("ftx full, precision = bf16: s/step, GFLOP/s, MFU vs bf16 peak",
            f"{f['full_bf16_seconds_per_step']:.2f}, {f['full_bf16_gflops']:.1f}, {f['full_bf16_mfu']:.3f}", "",
            f"{f['full_bf16_speedup_over_fp32']:.2f}x fp32"),
           ("ftx LoRA, precision = bf16: s/step, GFLOP/s, MFU vs bf16 peak",
            f"{f['lora_bf16_seconds_per_step']:.2f}, {f['lora_bf16_gflops']:.1f}, {f['lora_bf16_mfu']:.3f}", "",
            f"{f['lora_bf16_speedup_over_fp32']:.2f}x fp32")] if "gemm_peak_gflops_bf16" in f else []),
    ])
    print("\nwhere a plain full step goes (own CPU time, torch.profiler over 2 steps):")
    for group, share in sorted(f["breakdown"].items(), key=lambda kv: -kv[1]):
        print(f"  {group:<30} {share:>7.1%}")
    print("top ops: " + ", ".join(f"{o['op']} {o['share']:.1%}" for o in f["breakdown_top_ops"][:8]))


if __name__ == "__main__":
    sys.exit(main() and 0)
