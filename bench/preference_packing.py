"""Packed ÷ unpacked DPO: useful (non-pad) tokens per second of DPO training steps on real preference lengths.

    python bench/preference_packing.py [--pairs-per-batch 4] [--max-length 512] [--repeats 1]

The same batches of real preference pairs (../shared/data/stack_exchange_paired_tiny.json: 25
Stack Exchange questions with a preferred and a rejected answer, see ../shared/data/SOURCES.md)
go through a DPO step (policy forward with the reference forward, loss, backward; TRL 1.16's
DPOTrainer with a frozen reference copy) twice: as TRL pads them (chosen and rejected
sequences padded to the batch's longest) and packed (``[data] packing = true``: ftx-preference's
PackedDPOTrainer). Token lengths come from the GPT-2 tokenizer (../shared/data/gpt2_tokenizer,
chatml template), prompts cut to half of ``max_length`` as the dpo objective does; the ids are then
folded into the vocabulary of ``builtin:small-llama`` (8 layers, 256 wide), since only lengths and
masks shape the compute. No optimizer step is taken, so both see the same weights and the losses
can be compared batch by batch. Goal: packed ÷ unpacked >= 1.5.

CPU, one torch thread; times are CPU seconds of the benchmark thread (immune to other processes
time-slicing the shared machine), the fastest of ``--repeats`` tries per batch. Prints a table and
merges the figures into bench/results.json under "preference_packing".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, merge_results, print_table

SHARED = REPO.parent / "shared" / "data"
PAIRS = SHARED / "stack_exchange_paired_tiny.json"
GPT2 = SHARED / "gpt2_tokenizer"
FOLD_VOCAB = 500
"""Ids are folded below the built-in model's vocabulary (about 509 tokens)."""
GOAL = 1.5


def preference_examples(path: Path) -> list[Any]:
    """The file's pairs as ftx preference examples (``response_j`` is the preferred answer)."""
    from ftx_hookspecs import PreferenceExample

    rows = json.loads(path.read_text(encoding="utf-8"))
    return [PreferenceExample(prompt=[{"role": "user", "content": r["question"]}], chosen=r["response_j"],
                              rejected=r["response_k"]) for r in rows]


def trainers(model_path: Path, tokenizer: Any, examples: list[Any], max_length: int, out: Path) -> dict[str, Any]:
    """An unpacked (TRL's DPOTrainer) and a packed trainer, each on its own copy of the same weights."""
    from datasets import Dataset, disable_progress_bars
    from ftx_preference.dpo import conversational_rows
    from ftx_preference.packed_trainers import PackedDPOTrainer
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    disable_progress_bars()
    rows = Dataset.from_list(conversational_rows(examples, tokenizer, max_length // 2))
    base = AutoModelForCausalLM.from_pretrained(model_path)
    made = {}
    for name, trainer_class in (("unpacked", DPOTrainer), ("packed", PackedDPOTrainer)):
        model = copy.deepcopy(base)
        ref = copy.deepcopy(base).requires_grad_(False).eval()
        args = DPOConfig(output_dir=str(out / name), max_length=max_length, report_to=[], use_cpu=True,
                         gradient_checkpointing=False, beta=0.1, disable_tqdm=True)
        made[name] = trainer_class(model=model, ref_model=ref, args=args, train_dataset=rows,
                                   processing_class=tokenizer)
        made[name].model.train()
    return made


def folded_batches(trainer: Any, pairs_per_batch: int, max_length: int) -> list[dict[str, Any]]:
    """TRL's padded batches of the prepared pairs, in file order, ids folded into the model's vocabulary."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    collate = DataCollatorForPreference(pad_token_id=0, max_length=max_length)
    fold = [{k: [i % FOLD_VOCAB for i in row[k]] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
            for row in trainer.train_dataset]
    return [collate(fold[i : i + pairs_per_batch]) for i in range(0, len(fold), pairs_per_batch)]


def step_seconds(trainer: Any, batch: dict[str, Any]) -> tuple[float, float]:
    """CPU seconds of one DPO forward (policy and reference) + backward, and its loss."""
    started = time.thread_time()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    seconds = time.thread_time() - started
    trainer.model.zero_grad(set_to_none=True)
    return seconds, float(loss.detach())


def bench(made: dict[str, Any], batches: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Both trainers over the same batches, alternating; the fastest of ``repeats`` tries each."""
    seconds = {name: 0.0 for name in made}
    losses: dict[str, list[float]] = {name: [] for name in made}
    useful = 0
    for batch in batches:
        useful += int(batch["attention_mask"].sum())
        best = {name: float("inf") for name in made}
        last: dict[str, float] = {}
        for _ in range(repeats):
            for name, trainer in made.items():
                took, last[name] = step_seconds(trainer, batch)
                best[name] = min(best[name], took)
        for name in made:
            seconds[name] += best[name]
            losses[name].append(last[name])
        print(f"  batch {len(losses['packed'])}/{len(batches)}: " + ", ".join(
            f"{name} {best[name]:.1f} s" for name in made), file=sys.stderr, flush=True)
    stats = made["packed"].packing_stats
    rate = {name: useful / seconds[name] for name in made}
    return {
        "useful_tokens": useful,
        "useful_tokens_per_s_unpacked": round(rate["unpacked"], 1),
        "useful_tokens_per_s_packed": round(rate["packed"], 1),
        "packed_over_unpacked": round(rate["packed"] / rate["unpacked"], 3),
        "pad_share_unpacked": stats.figures()["pad_share_unpacked"],
        "pad_share_packed": stats.figures()["pad_share_packed"],
        "max_loss_difference": max(abs(a - b) for a, b in zip(losses["unpacked"], losses["packed"])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs-per-batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not PAIRS.exists() or not GPT2.exists():
        print(f"skipped: needs {PAIRS} and {GPT2} (the project's shared real data)")
        return 0

    import torch
    import transformers
    from ftx.models.templates import apply_chat_template_choice
    from ftx.models.tiny import ensure_builtin
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # CPU seconds of one thread: immune to other processes time-slicing the machine
    tokenizer = apply_chat_template_choice(AutoTokenizer.from_pretrained(GPT2), "chatml")
    examples = preference_examples(PAIRS)
    with tempfile.TemporaryDirectory() as scratch:
        made = trainers(ensure_builtin("builtin:small-llama", {}), tokenizer, examples, args.max_length, Path(scratch))
        batches = folded_batches(made["unpacked"], args.pairs_per_batch, args.max_length)
        lengths = [int(n) for b in batches for n in b["attention_mask"].sum(dim=1)]
        figures = bench(made, batches, args.repeats)
    load = os.getloadavg()[0]
    figures = {
        "data": f"{PAIRS.name} ({len(examples)} real pairs), GPT-2 token lengths, chatml",
        "model": "builtin:small-llama (8 layers, 256 wide), frozen reference copy",
        "device": "CPU, one torch thread; times are CPU seconds of the benchmark thread",
        "pairs_per_batch": args.pairs_per_batch,
        "batches": len(batches),
        "max_length": args.max_length,
        "tokens_per_sequence": {"min": min(lengths), "mean": round(statistics.fmean(lengths), 1), "max": max(lengths)},
        "load_average_1min": round(load, 2),
        **figures,
        "goals": {"packed_over_unpacked": f">= {GOAL}"},
    }
    ratio = figures["packed_over_unpacked"]
    t = figures["tokens_per_sequence"]
    print(f"data: {figures['data']}; max_length {args.max_length}, {args.pairs_per_batch} pairs a batch, "
          f"{len(batches)} batches; load average {load:.2f}" + (" (machine loaded)" if load > 1.5 else ""))
    print_table("DPO packing (forward with reference + backward, same batches, same weights)", [
        ("packed ÷ unpacked useful tokens/s", f"{ratio:.3f}", f">= {GOAL}", "yes" if ratio >= GOAL else "NO"),
        ("useful tokens/s unpacked / packed",
         f"{figures['useful_tokens_per_s_unpacked']:.0f} / {figures['useful_tokens_per_s_packed']:.0f}", "", ""),
        ("tokens per sequence min/mean/max", f"{t['min']}/{t['mean']:.0f}/{t['max']}", "", ""),
        ("padding share of computed tokens unpacked / packed",
         f"{figures['pad_share_unpacked']:.1%} / {figures['pad_share_packed']:.1%}", "", ""),
        ("max DPO loss difference per batch", f"{figures['max_loss_difference']:.2e}", "< 1e-4",
         "yes" if figures["max_loss_difference"] < 1e-4 else "NO"),
    ])
    merge_results("preference_packing", figures)
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
