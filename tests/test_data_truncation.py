"""Over-long conversations: ``data.overlength = "drop-oldest-turns"`` keeps the last, trained turns."""

from __future__ import annotations

from ftx.api import IGNORE_INDEX, tokenize_all
from ftx_hookspecs import ChatExample


def _conversation(turns: int) -> ChatExample:
    messages = [{"role": "system", "content": "answer in one word"}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question number {i} " + "padding words " * 6})
        messages.append({"role": "assistant", "content": f"answer{i}"})
    return ChatExample(messages)


def _trained_text(tokenizer, tok) -> str:
    return tokenizer.decode([t for t, label in zip(tok.input_ids, tok.labels) if label != IGNORE_INDEX])


def test_truncation_loses_the_last_answer_and_drop_oldest_turns_keeps_it(tiny_tokenizer):
    example = _conversation(8)
    whole = tokenize_all(tiny_tokenizer, [example], max_length=10_000)[0]
    limit = len(whole.input_ids) // 3

    (cut,) = tokenize_all(tiny_tokenizer, [example], max_length=limit, overlength="truncate")
    assert "answer7" not in _trained_text(tiny_tokenizer, cut)

    (kept,) = tokenize_all(tiny_tokenizer, [example], max_length=limit, overlength="drop-oldest-turns")
    assert len(kept.input_ids) <= limit
    trained = _trained_text(tiny_tokenizer, kept)
    assert "answer7" in trained and "answer0" not in trained
    text = tiny_tokenizer.decode(kept.input_ids)
    assert "answer in one word" in text  # the system turn stays
    assert text.count("question number") == trained.count("answer")  # whole exchanges only


def test_a_last_exchange_too_long_on_its_own_is_truncated(tiny_tokenizer):
    example = _conversation(1)
    whole = tokenize_all(tiny_tokenizer, [example], max_length=10_000)[0]
    (kept,) = tokenize_all(tiny_tokenizer, [example], max_length=len(whole.input_ids) - 3,
                           overlength="drop-oldest-turns", dropped={})
    assert len(kept.input_ids) == len(whole.input_ids) - 3
