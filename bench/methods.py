"""Method benchmarks: what LoRA and QLoRA save against full fine-tuning, measured in one job.

    python bench/methods.py [--steps 4] [--batch-size 8] [--length 128]

On a ~10M-parameter Llama-shaped model (``builtin:small-llama`` widened; random weights, which do
not change memory):

1. QLoRA linear-weight bytes ÷ bf16: the 4-bit layers' packed weights plus their quantisation
   constants (absmax, nested constants, code tables), as ``ftx.figures`` counts them, over 2 bytes
   per linear parameter. Goal ≤ 0.27 (NF4 with double quantisation: 0.5 + ~0.016 byte/param).
2. LoRA trainable state ÷ full: bytes of trainable parameters + their gradients + AdamW's two
   moments, measured from the tensors after real optimizer steps. Goal ≤ 0.05.
3. Peak RSS of LoRA ÷ full (reported): each method trains ``--steps`` steps in its own process
   (peak RSS is per process); the runtime's own memory (Python, torch) is in both.

Each measurement also shows what ``ftx plan`` estimated for the same setup. No GPU figures:
this runs on CPU (see bench/RESULTS.md). Prints a table and merges the figures into
bench/results.json under "methods".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import merge_results, print_table  # noqa: E402

MODEL_OVERRIDES = {
    "hidden_size": 320,
    "intermediate_size": 864,
    "num_hidden_layers": 9,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
}
"""~10.4M parameters, 98% of them in the blocks' linear layers, as in real models."""
LORA = {"r": 8, "target_modules": "all-linear", "dropout": 0.0}
"""peft's default rank. LoRA's share of a layer is r(in+out)/(in x out): ~5% at r=8 on these 320-wide
layers (at r=16 it is ~8%; on real 2-4k-wide models r=16 is under 2%). No dropout: peft's dropout keeps
a copy of every adapted layer's input for backward, which at this size outweighs the saved Adam state."""


def model_path() -> str:
    from ftx.models.tiny import ensure_builtin

    return str(ensure_builtin("builtin:small-llama", MODEL_OVERRIDES))


def _ctx(device: str = "cpu") -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(train=SimpleNamespace(gradient_checkpointing=False), device=device,
                           recipe={"model": {"dtype": "auto"}, "output": {"save": "auto"}})


def build(method: str, path: str) -> Any:
    """The model as the runner would hand it to the objective under ``method``."""
    from ftx.training import quiet_libraries
    from transformers import AutoModelForCausalLM

    quiet_libraries()
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(path)
        model.train()
        return model
    from ftx_lora import LoraOptions, QLoraOptions
    from ftx_lora.method import LoraMethod, QLoraMethod

    impl = QLoraMethod(QLoraOptions(**LORA)) if method == "qlora" else LoraMethod(LoraOptions(**LORA))
    model = AutoModelForCausalLM.from_pretrained(path, **impl.load_kwargs(_ctx()))
    return impl.apply(model, _ctx())


def train_steps(model: Any, steps: int, batch_size: int, length: int) -> Any:
    """A few AdamW steps on random tokens; returns the optimizer (its state is what is measured)."""
    import torch

    torch.manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    model.train()
    for _ in range(steps):
        ids = torch.randint(0, vocab, (batch_size, length))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients: they are part of the state
    return optimizer


def trainable_state_bytes(model: Any, optimizer: Any) -> dict[str, int]:
    """Bytes of trainable parameters, their gradients and the optimizer's moment tensors."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params if p.grad is not None]
    moments = [v for state in optimizer.state.values() for k, v in state.items()
               if torch.is_tensor(v) and k in ("exp_avg", "exp_avg_sq")]

    def size(tensors: list[Any]) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    return {"params": size(params), "grads": size(grads), "adam_moments": size(moments)}


def child(method: str, path: str, steps: int, batch_size: int, length: int) -> dict[str, Any]:
    """Run in a fresh process: build, train, and report figures and this process's peak RSS."""
    import resource

    import torch
    from ftx.figures import parameter_figures

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    import transformers  # noqa: F401 - the runtime is imported before the baseline is read

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = build(method, path)
    figures = parameter_figures(model)
    linear_params = 0
    if method == "qlora":
        import bitsandbytes as bnb

        for module in model.modules():  # isinstance: peft's LoRA wrapper is also named Linear4bit
            if isinstance(module, bnb.nn.Linear4bit):
                linear_params += module.weight.quant_state.shape.numel()
    optimizer = train_steps(model, steps, batch_size, length)
    state = trainable_state_bytes(model, optimizer)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"figures": figures, "linear_params_4bit": linear_params, "trainable_state": state,
            "rss_after_imports_mib": round(base_rss, 1), "peak_rss_mib": round(peak, 1)}


def run_child(method: str, path: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", method, "--path", path, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--length", str(args.length)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def planned(method: str, batch_size: int, length: int) -> dict[str, Any]:
    """What ``ftx plan`` estimates for the same model and setup."""
    from ftx.api import plugin_manager
    from ftx.models.tiny import VOCAB_SIZE, model_config
    from ftx_plan.estimate import Inputs, Selection, estimate
    from ftx_plan.shape import shape_from_config

    shape = shape_from_config({**model_config("small-llama", MODEL_OVERRIDES), "vocab_size": VOCAB_SIZE,
                               "model_type": "llama", "hidden_act": "silu"})
    options = {} if method == "full" else {"r": LORA["r"], "target_modules": "all-linear"}
    spec = plugin_manager().registry.get("method", method).spec
    selection = Selection((method, spec.options(**options)))
    return estimate(shape, Inputs(batch_size=batch_size, max_length=length), selection).as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--child", choices=["full", "lora", "qlora"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.steps, args.batch_size, args.length)))
        return

    path = model_path()
    runs = {method: run_child(method, path, args) for method in ("full", "lora", "qlora")}
    full, lora, qlora = runs["full"], runs["lora"], runs["qlora"]

    qbytes = qlora["figures"]["weight_bytes"]
    q_linear = qbytes.get("int4", 0) + qbytes.get("int4_constants", 0)
    q_ratio = q_linear / (2 * qlora["linear_params_4bit"])
    state_full = sum(full["trainable_state"].values())
    state_lora = sum(lora["trainable_state"].values())
    state_ratio = state_lora / state_full
    rss_ratio = lora["peak_rss_mib"] / full["peak_rss_mib"]
    rss_ratio_qlora = qlora["peak_rss_mib"] / full["peak_rss_mib"]
    above = {m: r["peak_rss_mib"] - r["rss_after_imports_mib"] for m, r in runs.items()}
    plans = {m: planned(m, args.batch_size, args.length) for m in runs}

    results = {
        "model": f"builtin:small-llama {MODEL_OVERRIDES}",
        "total_params": full["figures"]["total_params"],
        "setup": {"steps": args.steps, "batch_size": args.batch_size, "length": args.length, "lora": LORA,
                  "qlora": "nf4, double quant, fp32 compute, gradient checkpointing", "device": "cpu"},
        "qlora_linear_bytes_over_bf16": round(q_ratio, 4),
        "qlora_linear_weight_bytes": q_linear,
        "qlora_linear_params": qlora["linear_params_4bit"],
        "lora_trainable_state_over_full": round(state_ratio, 4),
        "trainable_state_bytes": {"full": full["trainable_state"], "lora": lora["trainable_state"]},
        "peak_rss_lora_over_full": round(rss_ratio, 4),
        "peak_rss_qlora_over_full": round(rss_ratio_qlora, 4),
        "peak_rss_mib": {m: r["peak_rss_mib"] for m, r in runs.items()},
        "peak_rss_above_imports_mib": {m: round(v, 1) for m, v in above.items()},
        "plan_estimate_mib": {m: round(p["total_bytes"] / 2**20, 1) for m, p in plans.items()},
        "goals": {"qlora_linear_bytes_over_bf16": "<= 0.27", "lora_trainable_state_over_full": "<= 0.05",
                  "peak_rss_lora_over_full": "reported"},
        "gpu": "none available in this session; CPU figures only",
    }
    merge_results("methods", results)
    mib = results["peak_rss_mib"]
    print_table(f"methods on a {results['total_params'] / 1e6:.1f}M-parameter model (cpu, batch "
                f"{args.batch_size} x {args.length}, {args.steps} steps)", [
        ("QLoRA linear-weight bytes / bf16", f"{q_ratio:.4f}", "<= 0.27", "yes" if q_ratio <= 0.27 else "NO"),
        ("LoRA trainable state / full", f"{state_ratio:.4f}", "<= 0.05", "yes" if state_ratio <= 0.05 else "NO"),
        ("peak RSS LoRA / full", f"{rss_ratio:.3f} ({mib['lora']:.0f} / {mib['full']:.0f} MiB)", "reported", "-"),
        ("peak RSS QLoRA / full", f"{rss_ratio_qlora:.3f} ({mib['qlora']:.0f} MiB)", "reported", "-"),
        ("peak RSS above imports full/lora/qlora",
         " / ".join(f"{above[m]:.0f}" for m in ("full", "lora", "qlora")) + " MiB", "reported", "-"),
        ("ftx plan estimate full/lora/qlora",
         " / ".join(f"{results['plan_estimate_mib'][m]:.0f}" for m in ("full", "lora", "qlora")) + " MiB",
         "reported", "-"),
    ])


if __name__ == "__main__":
    main()
