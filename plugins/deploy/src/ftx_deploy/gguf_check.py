"""Read a written GGUF file back and hold it to the model it came from before it is kept.

Three checks, each naming what differs: the file loads with transformers' GGUF reader (the ``gguf``
package); its own tokenizer turns the eval prompts into the same ids and carries the same chat
template; its greedy replies to those prompts equal the exported model's (f16) or stay within
:data:`Q8_TOLERANCE` of them (q8_0), and each stops at an end-of-sequence id.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftx.errors import RunError

from .smoke import Messages, generate_greedy

Q8_TOLERANCE = 0.75
"""q8_0 rounds every weight to 8 bits, so a long greedy reply may take another path where two tokens were
nearly tied: a q8_0 file passes when, on average over the prompts, its replies agree with the exported model's
for at least this share of their tokens (the common prefix over the longer reply) and every reply stops."""


class GGUFCheckFailed(RunError):
    """The written GGUF file does not load back, tokenises differently, or answers differently."""


@dataclass
class ReplyComparison:
    """One prompt's greedy reply from the exported model and from the GGUF file."""

    prompt: str
    expected: list[int]
    got: list[int]
    stopped: bool

    @property
    def agreement(self) -> float:
        """The common prefix's share of the longer reply (1.0: identical)."""
        longest = max(len(self.expected), len(self.got))
        if longest == 0:
            return 1.0
        same = next((i for i, (a, b) in enumerate(zip(self.expected, self.got)) if a != b),
                    min(len(self.expected), len(self.got)))
        return same / longest


def load_gguf(file: Path) -> tuple[Any, Any]:
    """The model and tokenizer of a GGUF file, dequantised to float32 by transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the reader draws a progress bar per tensor on stderr
            tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
            model = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name, dtype=torch.float32)
    except Exception as exc:  # any reader failure means the file is not usable
        raise GGUFCheckFailed(f"the written GGUF file does not load back ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:300]}). Nothing was exported.") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def check_tokenizer(reference: Any, tokenizer: Any, prompts: Sequence[Messages]) -> None:
    """The file's tokenizer must render and tokenise every prompt exactly as the exported one does."""
    if (reference.chat_template or "") != (tokenizer.chat_template or ""):
        raise GGUFCheckFailed("the GGUF file's chat template differs from the exported model's")
    for prompt in prompts:
        text = reference.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
        want = reference(text, add_special_tokens=False)["input_ids"]
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if want != got:
            at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            raise GGUFCheckFailed(f"the GGUF file's tokenizer splits the prompt {prompt[-1]['content'][:50]!r} differently "
                                  f"from token {at} on ({want[at:at + 4]} expected, {got[at:at + 4]} read back)")


def compare_replies(model: Any, tokenizer: Any, prompts: Sequence[Messages], expected: Sequence[Sequence[int]],
                    eos_ids: Sequence[int], max_new_tokens: int) -> list[ReplyComparison]:
    """Greedy replies of the GGUF model to ``prompts`` next to the exported model's (cut at the first EOS id)."""
    stops = set(eos_ids)
    out = []
    for prompt, want, ids in zip(prompts, expected, generate_greedy(model, tokenizer, prompts, max_new_tokens, eos_ids)):
        cut = next((i for i, t in enumerate(ids) if t in stops), None)
        got = ids if cut is None else ids[:cut]
        out.append(ReplyComparison(prompt[-1]["content"] if prompt else "", list(want), got, cut is not None))
    return out


def judge(comparisons: Sequence[ReplyComparison], quant: str) -> dict[str, Any]:
    """Pass or raise :class:`GGUFCheckFailed`: every reply stops, and replies match as ``quant`` allows."""
    same = sum(1 for c in comparisons if c.got == c.expected)
    agreement = sum(c.agreement for c in comparisons) / max(1, len(comparisons))
    summary = {"replies": len(comparisons), "identical": same, "agreement": round(agreement, 4),
               "stopped": sum(1 for c in comparisons if c.stopped),
               "rule": "identical" if quant == "f16" else f"agreement >= {Q8_TOLERANCE}"}
    problems = []
    if summary["stopped"] < len(comparisons):
        problems.append(f"{len(comparisons) - summary['stopped']} of {len(comparisons)} replies did not stop at an EOS id")
    if quant == "f16" and same < len(comparisons):
        problems.append(f"{len(comparisons) - same} of {len(comparisons)} greedy replies differ from the exported model's")
    if quant != "f16" and agreement < Q8_TOLERANCE:
        problems.append(f"replies agree with the exported model's on {agreement:.0%} of their tokens, under the "
                        f"{Q8_TOLERANCE:.0%} a {quant} file must keep")
    if problems:
        worst = min(comparisons, key=lambda c: c.agreement)
        raise GGUFCheckFailed("the written GGUF file answers differently from the exported model: " + "; ".join(problems)
                              + f" (e.g. prompt {worst.prompt[:50]!r}: {len(worst.expected)} tokens expected, "
                              f"{len(worst.got)} read back, first {worst.agreement:.0%} equal). Nothing was exported.")
    return summary


LONG_PROMPTS: tuple[Messages, ...] = (
    [{"role": "user", "content": "Explain in a few sentences how a bicycle works."}],
    [{"role": "user", "content": "Write a short story about a lighthouse keeper."}],
)
"""Open questions with long answers: the eval prompts of a classification-like task may be answered in one token,
which would check little of the weights. Their first :data:`LONG_TOKENS` greedy tokens are compared too."""
LONG_TOKENS = 48


def long_references(model: Any, tokenizer: Any, eos_ids: Sequence[int]) -> list[list[int]]:
    """The exported model's first :data:`LONG_TOKENS` greedy tokens on :data:`LONG_PROMPTS` (cut at an EOS id)."""
    stops = set(eos_ids)
    out = []
    for ids in generate_greedy(model, tokenizer, LONG_PROMPTS, LONG_TOKENS, eos_ids):
        cut = next((i for i, t in enumerate(ids) if t in stops), None)
        out.append(ids if cut is None else ids[:cut])
    return out


LOGIT_TOLERANCE = {"f16": 0.02, "q8_0": 0.1}
"""The largest next-token logit difference a file may show against the exported model on the checked prompts, as a
share of the largest logit: rounding to f16 moves logits by well under 1%, q8_0 by a few percent, while a tensor
written in the wrong layout moves them by tens of percent even where greedy replies happen to agree."""


def next_token_logits(model: Any, tokenizer: Any, prompts: Sequence[Messages]) -> Any:
    """The logits of the first reply token for each prompt (float32, on the CPU), one prompt at a time."""
    import torch

    rows = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
        batch = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(next(model.parameters()).device)
        with torch.no_grad():
            rows.append(model(**batch).logits[0, -1].float().cpu())
    return torch.stack(rows)


def logit_gap(got: Any, expected: Any) -> float:
    """``max |got - expected| / max |expected|`` over every prompt and vocabulary entry."""
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-6))


def verify_gguf(file: Path, reference_tokenizer: Any, prompts: Sequence[Messages], expected: Sequence[Sequence[int]],
                eos_ids: Sequence[int], max_new_tokens: int, quant: str, device: str = "cpu",
                long_expected: Sequence[Sequence[int]] = (), expected_logits: Any = None) -> dict[str, Any]:
    """Load ``file`` back and check it against the exported model's tokenizer and greedy replies (the eval prompts',
    which must stop, and ``long_expected``: the first tokens of :data:`LONG_PROMPTS`' replies, which may run on), and
    against ``expected_logits``: :func:`next_token_logits` of the exported model on ``prompts`` + :data:`LONG_PROMPTS`."""
    model, tokenizer = load_gguf(file)
    model = model.to(device)
    check_tokenizer(reference_tokenizer, tokenizer, [*prompts, *LONG_PROMPTS])
    gap = None
    if expected_logits is not None:
        gap = logit_gap(next_token_logits(model, tokenizer, [*prompts, *LONG_PROMPTS]), expected_logits)
        limit = LOGIT_TOLERANCE.get(quant, LOGIT_TOLERANCE["q8_0"])
        if gap > limit:
            raise GGUFCheckFailed(f"the written GGUF file's next-token logits differ from the exported model's by "
                                  f"{gap:.1%} of the largest logit, over the {limit:.0%} a {quant} file may show (a "
                                  "tensor written in the wrong layout or order). Nothing was exported.")
    comparisons = compare_replies(model, tokenizer, prompts, expected, eos_ids, max_new_tokens)
    if long_expected:
        extra = compare_replies(model, tokenizer, LONG_PROMPTS, long_expected, eos_ids, LONG_TOKENS)
        for item, want in zip(extra, long_expected):
            item.stopped = True  # cut at LONG_TOKENS on purpose: only the tokens are compared
            item.got = item.got[: len(want)] if len(item.got) > len(want) else item.got
        comparisons += extra
    summary = judge(comparisons, quant)
    if gap is not None:
        summary["logit_gap"] = round(gap, 5)
    return summary
