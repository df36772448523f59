"""Greedy generation for evaluators: batched, left-padded, stopping at the end-of-turn token.

Replies are cached on the model object, so that several evaluators scoring the same model on the
same prompts (exact-match, ROUGE, BLEU, the report's sample generations) generate once. The cache
is keyed by the weights' in-place version counters (a weight load or a plain optimizer step
invalidates it), and the runner empties it after training with :func:`forget_replies`, because
fused optimizer kernels (torch's ``fused=True`` AdamW) update weights without bumping those counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Message = dict[str, str]


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """EOS ids a generation stops at: the model's generation config, the tokenizer's EOS, and end-of-turn tokens."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    if isinstance(eos, int):
        ids.append(eos)
    elif eos:
        ids.extend(eos)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    from .models.templates import end_of_turn_ids

    ids.extend(end_of_turn_ids(tokenizer))  # <|im_end|>, <|eot_id|>: the built-in templates' end-of-turn tokens
    return sorted(set(ids))


CACHE_ATTR = "_ftx_generation_cache"


def weights_version(model: Any) -> tuple[int, ...]:
    """A key that changes whenever any parameter is modified in place (optimizer step, ``load_state_dict``)."""
    return tuple(p._version for p in model.parameters())


def forget_replies(model: Any) -> None:
    """Drop ``model``'s cached replies: call it whenever its weights may have changed behind the version counters."""
    if getattr(model, CACHE_ATTR, None) is not None:
        object.__setattr__(model, CACHE_ATTR, None)


def _cache(model: Any) -> dict[tuple[str, int], str]:
    """The reply cache of ``model`` for its current weights (emptied when the weights changed)."""
    version = weights_version(model)
    cached = getattr(model, CACHE_ATTR, None)
    if cached is None or cached[0] != version:
        cached = (version, {})
        object.__setattr__(model, CACHE_ATTR, cached)
    return cached[1]


def generate_replies(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[Message]], *, max_new_tokens: int = 64, batch_size: int = 32,
    tools: Sequence[Sequence[Any] | None] | None = None,
) -> list[str]:
    """The model's greedy reply to each conversation, decoded without special tokens (cached per weights).

    ``tools``: each prompt's tool list (``meta["tools"]``), placed as in training (:mod:`ftx.data.chat`)."""
    from .data.chat import render_chat

    tool_lists = list(tools) if tools is not None else [None] * len(prompts)
    texts = [render_chat(tokenizer, p, t, add_generation_prompt=True) for p, t in zip(prompts, tool_lists)]
    cache = _cache(model)
    missing = list(dict.fromkeys(t for t in texts if (t, max_new_tokens) not in cache))
    if missing:
        for text, reply in zip(missing, _generate(model, tokenizer, missing, max_new_tokens, batch_size)):
            cache[(text, max_new_tokens)] = reply
    return [cache[(t, max_new_tokens)] for t in texts]


def _generate(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy replies to prompts already rendered with the chat template."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer, model)
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    replies: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            batch = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stops,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            replies.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return replies
