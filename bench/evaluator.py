"""Evaluator generation: the scaffold's evaluator as it was (one greedy generation per prompt) ÷ as it is
now (ftx.api.generate_replies: batched, left-padded, stopping at the end-of-turn token), 50 held-out
prompts of the quickstart task on the quickstart's built-in model.

    python bench/evaluator.py [--prompts 50] [--max-new-tokens 32]

Both sides generate the same greedy replies (checked) from the same model in this one job; the reply
cache is cleared before the batched side, so it generates every reply.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from common import REPO, merge_results, print_table

DATA = REPO / "recipes" / "data" / "reverse.jsonl"


def one_by_one(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
    """The scaffold evaluator's old ``reply``: one ``generate`` call per prompt."""
    import torch

    replies = []
    for messages in prompts:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        replies.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return replies


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    from ftx.api import generate_replies, quiet_libraries
    from ftx.generation import forget_replies
    from ftx.models.loading import resolve_model_path
    from ftx.recipe.schema import ModelSection
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    path = resolve_model_path(ModelSection(name="builtin:tiny-llama"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[: args.prompts]]
    prompts = [[{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}".strip()}] for r in rows]

    started = time.perf_counter()
    slow = one_by_one(model, tokenizer, prompts, args.max_new_tokens)
    unbatched = time.perf_counter() - started
    forget_replies(model)
    started = time.perf_counter()
    fast = generate_replies(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens)
    batched = time.perf_counter() - started
    same = sum(a.strip() == b.strip() for a, b in zip(slow, fast)) / len(prompts)

    figures = {"prompts": len(prompts), "unbatched_seconds": round(unbatched, 3), "batched_seconds": round(batched, 3),
               "batched_speedup": round(unbatched / batched, 3), "same_replies": same}
    merge_results("evaluator", figures)
    print_table("Evaluator generation (50 prompts, greedy)", [
        ("one generate per prompt (s)", f"{unbatched:.2f}", "", ""),
        ("ftx.api.generate_replies (s)", f"{batched:.2f}", "", ""),
        ("speed-up", f"{unbatched / batched:.2f}", ">= 3", "yes" if unbatched / batched >= 3 else "NO"),
        ("same replies", f"{same:.0%}", "100%", "yes" if same == 1 else "NO"),
    ])
    return figures


if __name__ == "__main__":
    main()
