"""Which token ends an assistant turn under a chat template, and the ids generation must stop at.

A model learns to stop by emitting the token its training template put after every assistant
message (``<|im_end|>`` for chatml, ``<|eot_id|>`` for llama3, the EOS token for zephyr or alpaca).
A deployed model stops only if that token is among its generation config's ``eos_token_id``: the
usual cause of "my fine-tuned model never stops" is a config listing only the tokenizer's EOS.
"""

from __future__ import annotations

from typing import Any

_MARK = "ftx-end-of-turn-probe"


def template_end_of_turn(tokenizer: Any) -> int | None:
    """The id of the special token the chat template writes right after an assistant message, if any.

    Found by rendering a one-exchange conversation and reading the first token after the assistant's
    text, so it works for any template, not only the built-in ones.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARK}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this has no end-of-turn to report
        return None
    if _MARK not in text:
        return None
    after = text[text.rindex(_MARK) + len(_MARK):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    for token in ids[:2]:  # the end-of-turn token comes first, at most after a separator
        if token in special:
            return int(token)
    return None


def as_id_list(value: Any) -> list[int]:
    """``eos_token_id`` as a list (a generation config holds an int, a list or None)."""
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def generation_stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id a reply may end with: the generation config's EOS ids, the tokenizer's EOS, the template's end of turn."""
    from ftx.api import stop_token_ids

    ids = set(stop_token_ids(tokenizer, model))
    end = template_end_of_turn(tokenizer)
    if end is not None:
        ids.add(end)
    return sorted(ids)


def token_names(tokenizer: Any, ids: list[int]) -> str:
    """``'<|im_end|>' (id 4), '</s>' (id 2)``: ids with their tokens, for messages."""
    return ", ".join(f"{tokenizer.convert_ids_to_tokens(int(i))!r} (id {int(i)})" for i in ids) or "none"
