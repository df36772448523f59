"""The reply cache of evaluators: reused for unchanged weights, dropped when the weights change.

torch's fused AdamW (ftx's default optimizer on CPU and CUDA) updates weights without bumping their
version counters, so the runner drops the cache after training; without that, a run's "after"
figures were the untrained model's replies (exact match 0 -> 0 on the quickstart).
"""

from __future__ import annotations

import torch
from ftx import generation
from ftx.generation import forget_replies, generate_replies

PROMPTS = [[{"role": "user", "content": "Reverse the letters.\na b c"}]]


def _counting(monkeypatch):
    calls = []
    real = generation._generate

    def counted(model, tokenizer, texts, max_new_tokens, batch_size):
        calls.append(len(texts))
        return real(model, tokenizer, texts, max_new_tokens, batch_size)

    monkeypatch.setattr(generation, "_generate", counted)
    return calls


def _fused_step(model):
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    torch.optim.AdamW(model.parameters(), lr=0.5, fused=True).step()


def test_cached_until_weights_change_then_forgotten(monkeypatch, tiny_model_factory, tiny_tokenizer):
    calls = _counting(monkeypatch)
    model = tiny_model_factory()
    first = generate_replies(model, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    assert generate_replies(model, tiny_tokenizer, PROMPTS, max_new_tokens=8) == first and calls == [1]

    _fused_step(model)  # the weights changed behind the version counters
    forget_replies(model)
    generate_replies(model, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    assert calls == [1, 1]


def test_an_ordinary_weight_update_invalidates_by_itself(monkeypatch, tiny_model_factory, tiny_tokenizer):
    calls = _counting(monkeypatch)
    model = tiny_model_factory()
    generate_replies(model, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    generate_replies(model, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    assert calls == [1, 1]
