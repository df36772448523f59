"""How a (prompt, answer) pair becomes tokens for a reward model, and how one is scored.

Decoder models (the built-in tiny Llama, SmolLM, ...) read the conversation through their chat
template and are scored at the last token. Encoders (BERT-like models such as all-MiniLM-L6-v2)
have no chat template worth the name: they read the prompt and the answer as a plain text pair
(``[CLS] prompt [SEP] answer [SEP]``). The reward objective, the ``preference`` evaluator and the
``reward-model`` reward all go through here, so a reward model is scored the way it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Messages = Sequence[dict[str, str]]


def render_style(tokenizer: Any, requested: str = "auto") -> str:
    """``chat`` or ``plain``; ``auto`` picks ``plain`` for tokenizers with ``[CLS]``/``[SEP]`` tokens (encoders)."""
    if requested != "auto":
        return requested
    if getattr(tokenizer, "cls_token", None) and getattr(tokenizer, "sep_token", None):
        return "plain"
    return "chat"


def prompt_text(prompt: Messages) -> str:
    """The prompt's turns as plain text, one per line."""
    return "\n".join(m["content"] for m in prompt)


def fit_prompt(tokenizer: Any, prompt: Messages, budget: int) -> list[dict[str, str]]:
    """The prompt, its longest turn cut from the start until the rendered prompt fits ``budget`` tokens.

    Long questions (real preference data) would otherwise leave no room for the answers, which
    are what a preference is about; the end of a question is usually closest to what is answered.
    """
    turns = [dict(m) for m in prompt]
    for _ in range(4):
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        excess = len(tokenizer(text, add_special_tokens=False)["input_ids"]) - budget
        if excess <= 0:
            break
        longest = max(range(len(turns)), key=lambda i: len(turns[i]["content"]))
        ids = tokenizer(turns[longest]["content"], add_special_tokens=False)["input_ids"]
        turns[longest]["content"] = tokenizer.decode(ids[min(len(ids), excess + 2):])
    return turns


def encode(tokenizer: Any, prompt: Messages, answer: str, style: str, max_length: int) -> list[int]:
    """Token ids of one prompt and answer, truncated to ``max_length``.

    A prompt longer than half of ``max_length`` is shortened from its start first, so the answer
    (what is being judged) is kept.
    """
    if style == "plain":
        # longest_first trims whichever of prompt and answer is longer, so both keep a share
        enc = tokenizer(prompt_text(prompt), answer, truncation="longest_first", max_length=max_length)
        return list(enc["input_ids"])[:max_length]
    prompt = fit_prompt(tokenizer, prompt, max_length // 2)
    text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids[:max_length]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids`` and ``attention_mask`` tensors."""
    import torch

    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def score(
    model: Any, tokenizer: Any, prompts: Sequence[Messages], answers: Sequence[str], *,
    style: str = "auto", max_length: int = 512, batch_size: int = 16,
) -> list[float]:
    """The reward model's score of each (prompt, answer), in evaluation mode, without gradients."""
    import torch

    style = render_style(tokenizer, style)
    encoded = [encode(tokenizer, p, a, style, max_length) for p, a in zip(prompts, answers)]
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = {k: v.to(device) for k, v in pad_batch(encoded[start : start + batch_size], pad_id).items()}
            logits = model(**batch).logits.float()
            out.extend(float(x) for x in logits[:, 0])
    model.train(was_training)
    return out
