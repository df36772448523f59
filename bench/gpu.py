"""GPU benchmarks: what only a GPU can show. ``bench/gpu.sh`` runs this on a CUDA machine.

    python bench/gpu.py [--smoke] [--only mfu lora qlora]

- ``mfu``: model FLOPs utilisation of ftx full fine-tuning, bf16, on a ~1.1B Llama-shaped model
  (TinyLlama's shape, random weights), counting 6·N·tokens plus attention (goal >= 40%).
- ``lora``: LoRA training tokens/s of ftx, with and without ``[[kernels]] use = "liger"``, ÷ a plain
  TRL ``SFTTrainer`` script on the same model, data and settings (goal >= 1.15).
- ``qlora``: QLoRA peak GPU memory on an 8B Llama-shaped model (Llama-3-8B's shape), beside
  ``ftx plan``'s estimate.
- ``zero3``: full fine-tuning of the ~1.1B shape under ``[distributed] strategy = "deepspeed"``,
  ``zero_stage = 3``, through ``ftx run --nproc-per-node <GPUs>``: tokens/s and rank 0's peak GPU
  memory beside the plain run of ``mfu`` (needs the deepspeed package; skipped without it).

Every training run is its own process (``gpu.py one ...``): its own memory peak, Liger's patching
of transformers' classes cannot leak into the baseline, and a failure or a hang (each run has a
time limit) costs one figure, not the suite. Throughput is the steady state: the time between two
logged steps after warm-up, so start-up, compilation and saving are left out of both sides alike.
``--smoke`` runs the same code with tiny shapes and few steps on any machine (CPU included), so
the script is checked by the test suite between the rare sessions that have a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCH, merge_results, print_table, steady_seconds_per_step

SHAPES: dict[str, dict[str, Any]] = {
    # TinyLlama-1.1B
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "vocab_size": 32000, "tie_word_embeddings": False},
    # Llama-3-8B
    "8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False},
    "smoke": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 1024, "tie_word_embeddings": False},
}
"""Model shapes (Llama architecture); ``--smoke`` uses ``smoke`` for every part."""

WORKLOADS: dict[str, dict[str, int]] = {
    # batch x seq tokens per step; steps run, the first `warmup` of them left out of the rate
    "mfu": {"batch": 8, "seq": 2048, "steps": 30, "warmup": 10, "log_every": 5},
    "lora": {"batch": 8, "seq": 2048, "steps": 30, "warmup": 10, "log_every": 5},
    "qlora": {"batch": 1, "seq": 2048, "steps": 8, "warmup": 4, "log_every": 2},
    "smoke": {"batch": 2, "seq": 64, "steps": 6, "warmup": 2, "log_every": 2},
}
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
LR = 1e-4
RUN_TIMEOUT_S = int(os.environ.get("FTX_BENCH_RUN_TIMEOUT", "300"))

PEAK_BF16_TFLOPS: dict[str, float] = {
    # dense bf16 tensor-core peak, from each vendor data sheet; FTX_PEAK_TFLOPS overrides
    "B200": 2250.0, "H200": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4, "H800": 989.4,
    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0, "A10": 125.0,
    "RTX 4090": 165.2, "RTX 6000 Ada": 364.2,
}


# -- one run per process ------------------------------------------------------------------------


def peak_tflops(device_name: str) -> float | None:
    """The GPU's dense bf16 peak, by name (longest match first); ``None`` when unknown."""
    if os.environ.get("FTX_PEAK_TFLOPS"):
        return float(os.environ["FTX_PEAK_TFLOPS"])
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def make_model_dir(shape_name: str, dest: Path) -> Path:
    """A random-weight Llama of ``shape_name`` with ftx's locally trained tokenizer, saved as Hugging Face files.

    Built on the GPU when there is one (seconds even for 8B), in bf16 there, float32 on CPU. The
    vocabulary is the shape's; the tokenizer uses its first 512 ids, which costs the same compute.
    """
    if (dest / "config.json").exists():
        return dest
    import torch
    from ftx.models.tiny import train_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer()
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    config = LlamaConfig(**SHAPES[shape_name], max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    tmp = dest.with_name(dest.name + ".tmp")
    model.save_pretrained(tmp, max_shard_size="4GB")
    tokenizer.save_pretrained(tmp)
    tmp.rename(dest)
    del model
    return dest


def write_text_data(path: Path, rows: int, seq: int, tokenizer_dir: Path) -> Path:
    """``rows`` lines of random words, each at least ``seq`` tokens long, so every example fills the sequence."""
    if path.exists():
        return path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rng = random.Random(0)

    def passage(words: int) -> str:
        return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 7))) for _ in range(words))

    words = seq
    while len(tokenizer(passage(words))["input_ids"]) < seq + 8:
        words *= 2
    path.write_text("".join(json.dumps({"text": passage(words)}) + "\n" for _ in range(rows)), encoding="utf-8")
    return path


def steady_rate(clock: list[tuple[int, float]], warmup: int, tokens_per_step: int) -> dict[str, float]:
    """Tokens/s between the first logged step after ``warmup`` and the last logged step."""
    per_step, steps = steady_seconds_per_step(clock, warmup)
    return {"tokens_per_s": tokens_per_step / per_step, "timed_steps": steps, "seconds": per_step * steps}


def _sync_time() -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def ftx_recipe(model_dir: Path, data: Path, work: dict[str, int], method: dict[str, Any],
               kernels: bool, gradient_checkpointing: bool, distributed: dict[str, Any] | None = None) -> str:
    """The recipe of one ftx benchmark run: plain text, no evaluators, no report samples."""
    method_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in method.items())
    recipe = (
        f'[model]\nname = "{model_dir}"\n'
        f'[data]\nformat = "text"\ntrain = "{data}"\neval = 0.02\nmax_length = {work["seq"]}\ncache = false\n'
        f"[method]\n{method_lines}\n"
        '[objective]\nuse = "text"\n'
        f'[train]\nmax_steps = {work["steps"]}\nbatch_size = {work["batch"]}\nlr = {LR}\n'
        f'log_every = {work["log_every"]}\nseed = 1\ngradient_checkpointing = {str(gradient_checkpointing).lower()}\n'
        "[evaluation]\nforgetting = false\nsamples = 0\n"
    )
    if kernels:
        recipe += '[[kernels]]\nuse = "liger"\n'
    if distributed:
        recipe += "[distributed]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in distributed.items())
    return recipe


def run_ftx(recipe_text: str, workdir: Path) -> dict[str, Any]:
    """Run one recipe through ftx with a plugin that timestamps every logged training step."""
    from ftx.plugins import make_plugin_manager
    from ftx.runner import run_recipe
    from ftx_hookspecs import hookimpl

    clock: list[tuple[int, float]] = []

    class StepClock:
        @hookimpl
        def ftx_log_metrics(self, run: Any, step: int, metrics: Any) -> None:
            if "loss" in metrics:
                clock.append((step, _sync_time()))

    path = workdir / "recipe.toml"
    path.write_text(recipe_text, encoding="utf-8")
    manager = make_plugin_manager(extra_plugins=[StepClock()])
    recipe = manager.load_recipe(path)
    metrics = run_recipe(recipe, manager, output=workdir / "run", echo=lambda m: print(m, flush=True))
    from ftx_plan.estimate import plan_report

    plan = plan_report(recipe, "cuda" if "peak_cuda_mib" in metrics["figures"] else "cpu")
    return {"clock": clock, "figures": metrics["figures"], "plan_total_bytes": plan["estimate"]["total_bytes"]}


ZERO3 = {"strategy": "deepspeed", "zero_stage": 3}
"""The ``[distributed]`` table of the ``zero3`` part."""


def run_ftx_launched(recipe_text: str, workdir: Path) -> dict[str, Any]:
    """Run one recipe through ``ftx run --nproc-per-node <GPUs>`` (a sharded strategy needs torch's launcher);
    the step clock comes from the run's ``logs.jsonl``, whose entries carry the time they were logged."""
    import socket

    import torch

    path = workdir / "recipe.toml"
    path.write_text(recipe_text, encoding="utf-8")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gpus = max(1, torch.cuda.device_count())
    proc = subprocess.run([sys.executable, "-m", "ftx.cli", "run", str(path), "--output", str(workdir / "run"),
                           "--nproc-per-node", str(gpus), "--master-port", str(port)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr).strip().splitlines()[-1] if proc.stdout + proc.stderr
                           else f"ftx run exited {proc.returncode}")
    clock = []
    for line in (workdir / "run" / "logs.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "loss" in entry and "time" in entry:
            clock.append((int(entry["step"]), float(entry["time"])))
    figures = json.loads((workdir / "run" / "metrics.json").read_text(encoding="utf-8"))["figures"]
    return {"clock": clock, "figures": figures, "gpus": gpus}


def run_trl(model_dir: Path, data: Path, work: dict[str, int], workdir: Path) -> dict[str, Any]:
    """The baseline: a plain TRL ``SFTTrainer`` LoRA script, as its documentation writes one."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    clock: list[tuple[int, float]] = []

    class StepClock(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                clock.append((state.global_step, _sync_time()))

    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = SFTConfig(
        output_dir=str(workdir / "trl"), max_steps=work["steps"], per_device_train_batch_size=work["batch"],
        learning_rate=LR, max_length=work["seq"], logging_steps=work["log_every"], save_strategy="no",
        report_to="none", seed=1, bf16=cuda, use_cpu=not cuda, disable_tqdm=True,
        optim="adamw_torch_fused",
        activation_checkpointing=False,  # TRL's default is on; ftx's LoRA runs here do not checkpoint
    )
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules="all-linear", task_type="CAUSAL_LM")
    dataset = load_dataset("json", data_files=str(data), split="train")
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora, callbacks=[StepClock()])
    trainer.train()
    figures = {"peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if cuda else {}
    return {"clock": clock, "figures": figures}


def one(kind: str, shape: str, workload: str, work_root: Path, out: Path) -> None:
    """One step in this process: ``kind`` is ``model`` (build the shape's model folder) or a training
    run: full, lora, lora-liger, lora-trl or qlora."""
    from ftx.training import quiet_libraries

    quiet_libraries()
    work = WORKLOADS[workload]
    model_dir = make_model_dir(shape, work_root / f"model-{shape}")
    if kind == "model":
        out.write_text(json.dumps({"model_dir": str(model_dir), "params": _param_counts(model_dir)}), encoding="utf-8")
        return
    data = write_text_data(work_root / f"text-{work['seq']}.jsonl", max(100, 40 * work["batch"]), work["seq"], model_dir)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work_root))
    lora_table = {"r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"], "target_modules": "all-linear"}
    if kind == "lora-trl":
        result = run_trl(model_dir, data, work, run_dir)
    elif kind == "zero3":
        recipe = ftx_recipe(model_dir, data, work, {"use": "full"}, kernels=False, gradient_checkpointing=False,
                            distributed=ZERO3)
        result = run_ftx_launched(recipe, run_dir)
    else:
        method = {"full": {"use": "full"}, "qlora": {"use": "qlora", **lora_table}}.get(kind, {"use": "lora", **lora_table})
        recipe = ftx_recipe(model_dir, data, work, method, kernels=kind == "lora-liger",
                            gradient_checkpointing=kind == "qlora")
        result = run_ftx(recipe, run_dir)
    result.update(steady_rate(result.pop("clock"), work["warmup"], work["batch"] * work["seq"]))
    result["params"] = _param_counts(model_dir)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")


def _param_counts(model_dir: Path) -> dict[str, int]:
    """Parameters of the model folder's config, and those doing matrix work per token: the blocks' linear
    layers and the output head (tied or not); the input embedding is a lookup and the norms are negligible."""
    from ftx_plan.shape import shape_from_config

    shape = shape_from_config(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
    return {"total": shape.total_params(), "matmul": shape.linear_params() + shape.vocab * shape.hidden}


# -- the orchestrator ---------------------------------------------------------------------------


def spawn(kind: str, shape: str, workload: str, work_root: Path) -> dict[str, Any]:
    """Run ``one`` in a fresh process with a time limit; its result, or what went wrong."""
    out = work_root / f"result-{kind}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "one", kind, "--shape", shape, "--workload", workload,
           "--work", str(work_root), "--out", str(out)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=BENCH)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {RUN_TIMEOUT_S} s"}
    wall = round(time.perf_counter() - started, 1)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-12:]
        print(f"[{kind}: exit {proc.returncode} after {wall} s]\n  " + "\n  ".join(tail), flush=True)
        return {"error": tail[-1] if tail else f"exit {proc.returncode}"}
    result = json.loads(out.read_text(encoding="utf-8"))
    result["wall_s"] = wall
    rate = f"{result['tokens_per_s']:.0f} tokens/s, " if "tokens_per_s" in result else ""
    print(f"[{kind} ({shape}): {rate}{wall} s]", flush=True)
    return result


def flops_per_token(shape: dict[str, Any], matmul_params: int, seq: int) -> float:
    """6 x the parameters doing matrix work, plus attention's 12 x layers x hidden x sequence (PaLM's count)."""
    return 6.0 * matmul_params + 12.0 * shape["num_hidden_layers"] * shape["hidden_size"] * seq


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (smoke: no GPU)"


def deepspeed_available() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("deepspeed") is not None


def liger_available() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    single = sub.add_parser("one", help="one training run (used by the suite itself)")
    single.add_argument("kind", choices=["model", "full", "lora", "lora-liger", "lora-trl", "qlora", "zero3"])
    single.add_argument("--shape", required=True, choices=sorted(SHAPES))
    single.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    single.add_argument("--work", type=Path, required=True)
    single.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, few steps: checks the script on any machine")
    parser.add_argument("--only", nargs="*", choices=["mfu", "lora", "qlora", "zero3"],
                        default=["mfu", "lora", "qlora", "zero3"])
    parser.add_argument("--work", type=Path, help="folder for models and runs (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.command == "one":
        one(args.kind, args.shape, args.workload, args.work, args.out)
        return 0

    work_root = args.work or Path(tempfile.mkdtemp(prefix="ftx-gpu-bench-"))
    work_root.mkdir(parents=True, exist_ok=True)
    name = device_name()
    shape_1b, shape_8b = ("smoke", "smoke") if args.smoke else ("1b", "8b")
    load = {part: ("smoke" if args.smoke else part) for part in ("mfu", "lora", "qlora")}
    load["zero3"] = load["mfu"]
    figures: dict[str, Any] = {"device": name, "smoke": args.smoke, "shapes": {"1b": shape_1b, "8b": shape_8b},
                               "workloads": {p: WORKLOADS[w] for p, w in load.items()}}
    rows: list[tuple[str, str, str, str]] = []
    started = time.perf_counter()

    for shape, parts in ((shape_1b, ("mfu", "lora", "zero3")), (shape_8b, ("qlora",))):
        if any(p in args.only for p in parts) and not (work_root / f"model-{shape}" / "config.json").exists():
            built = spawn("model", shape, "smoke" if args.smoke else parts[0], work_root)
            figures.setdefault("model_builds", {})[shape] = built

    if "mfu" in args.only:
        full = spawn("full", shape_1b, load["mfu"], work_root)
        figures["mfu_run"] = full
        if "error" not in full:
            seq = WORKLOADS[load["mfu"]]["seq"]
            per_token = flops_per_token(SHAPES[shape_1b], full["params"]["matmul"], seq)
            achieved = full["tokens_per_s"] * per_token / 1e12
            peak = peak_tflops(name)
            mfu = achieved / peak if peak else None
            figures.update(mfu=None if mfu is None else round(mfu, 4), achieved_tflops=round(achieved, 2),
                           peak_tflops=peak, flops_per_token=per_token)
            rows.append(("MFU, full fine-tuning, bf16", "n/a (no peak known)" if mfu is None else f"{mfu:.1%}",
                         ">= 40%", "-" if mfu is None else ("yes" if mfu >= 0.40 else "NO")))
        else:
            rows.append(("MFU, full fine-tuning, bf16", "failed", ">= 40%", "NO"))

    if "lora" in args.only:
        trl = spawn("lora-trl", shape_1b, load["lora"], work_root)
        plain = spawn("lora", shape_1b, load["lora"], work_root)
        liger = spawn("lora-liger", shape_1b, load["lora"], work_root) if liger_available() else {
            "error": "skipped: needs CUDA and liger-kernel"}
        figures["lora_runs"] = {"trl": trl, "ftx": plain, "ftx_liger": liger}
        for label, run in (("ftx LoRA / TRL SFTTrainer LoRA", plain), ("ftx LoRA + liger / TRL SFTTrainer LoRA", liger)):
            if "error" in run or "error" in trl:
                rows.append((label, (run.get("error") or trl.get("error"))[:40], ">= 1.15", "-"))
                continue
            ratio = run["tokens_per_s"] / trl["tokens_per_s"]
            figures["ftx_liger_over_trl" if "liger" in label else "ftx_over_trl"] = round(ratio, 3)
            rows.append((label, f"{ratio:.2f}", ">= 1.15", "yes" if ratio >= 1.15 else "NO"))

    if "qlora" in args.only:
        q = spawn("qlora", shape_8b, load["qlora"], work_root)
        figures["qlora_run"] = q
        if "error" not in q:
            peak = q["figures"].get("peak_cuda_mib")
            plan_mib = q["plan_total_bytes"] / 2**20
            figures.update(qlora_peak_cuda_mib=peak, qlora_plan_estimate_mib=round(plan_mib, 1))
            rows.append(("QLoRA peak GPU memory, 8B shape", f"{peak / 1024:.2f} GiB" if peak else "n/a (CPU)",
                         "reported", "-"))
            rows.append(("  ftx plan's estimate", f"{plan_mib / 1024:.2f} GiB", "within 30%",
                         "-" if not peak else ("yes" if abs(plan_mib - peak) <= 0.3 * peak else "NO")))
        else:
            rows.append(("QLoRA peak GPU memory, 8B shape", "failed", "reported", "NO"))

    if "zero3" in args.only:
        z = spawn("zero3", shape_1b, load["zero3"], work_root) if deepspeed_available() else {
            "error": "skipped: needs CUDA and deepspeed"}
        figures["zero3_run"] = z
        label = f"ZeRO-3 full fine-tuning, bf16, {z.get('gpus', '?')} GPU(s)"
        if "error" in z:
            rows.append((label, z["error"][:40], "reported", "-"))
        else:
            plain = figures.get("mfu_run", {})
            ratio = z["tokens_per_s"] / plain["tokens_per_s"] if plain.get("tokens_per_s") else None
            figures.update(zero3_tokens_per_s=round(z["tokens_per_s"], 1),
                           zero3_over_plain=None if ratio is None else round(ratio, 3),
                           zero3_peak_cuda_mib=z["figures"].get("peak_cuda_mib"))
            rows.append((label, f"{z['tokens_per_s']:.0f} tokens/s", "reported", "-"))
            rows.append(("  ZeRO-3 / plain (tokens/s)", "n/a" if ratio is None else f"{ratio:.2f}", "reported", "-"))
            peak = z["figures"].get("peak_cuda_mib")
            rows.append(("  ZeRO-3 peak GPU memory, rank 0", f"{peak / 1024:.2f} GiB" if peak else "n/a", "reported", "-"))

    figures["seconds"] = round(time.perf_counter() - started, 1)
    print_table(f"GPU benchmarks on {name}{' (smoke)' if args.smoke else ''}", rows)
    merge_results("GPU_smoke" if args.smoke else "GPU", figures)
    out_dir = os.environ.get("OUT")
    if out_dir:
        (Path(out_dir) / "gpu-results.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    failed = [k for k in ("mfu_run", "qlora_run") if "error" in figures.get(k, {})]
    failed += [k for k in ("zero3_run",) if "skipped" not in figures.get(k, {}).get("error", "skipped")]
    failed += [k for k, v in figures.get("lora_runs", {}).items() if "error" in v and "skipped" not in v["error"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
