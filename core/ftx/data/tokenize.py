"""Tokenise examples with exact loss masks: only assistant turns (and their end-of-turn token) train.

The chat template is rendered to text once; the character span of every assistant turn is found by
rendering the conversation up to that turn, and tokens are marked trained by their character
offsets. This works for any template whose renderings of growing prefixes extend each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ftx_hookspecs import ChatExample, Example, TextExample

from ..errors import DataError

IGNORE_INDEX = -100


@dataclass
class Tokenized:
    """Token ids and labels (``-100`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def assistant_spans(tokenizer: Any, messages: Sequence[dict[str, str]], train_on: str = "assistant") -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to train, each ending after its end-of-turn marker."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if train_on == "all":
        return text, [(0, len(text))]
    spans: list[tuple[int, int]] = []
    assistant_turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if train_on == "last":
        assistant_turns = assistant_turns[-1:]
    for i in assistant_turns:
        before = tokenizer.apply_chat_template(list(messages[:i]), tokenize=False, add_generation_prompt=True) if i else ""
        upto = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
        if not text.startswith(upto) or not upto.startswith(before):
            raise DataError(
                "the chat template does not render conversations prefix by prefix, so assistant turns "
                "cannot be located; set model.chat_template to a built-in template such as 'chatml'"
            )
        end = len(upto.rstrip())  # the end-of-turn token trains; the newline after it does not
        spans.append((len(before), end))
    return text, spans


def tokenize_chat(tokenizer: Any, example: ChatExample, train_on: str = "assistant") -> Tokenized:
    """Ids and labels of a whole conversation, masked to the assistant turns."""
    text, spans = assistant_spans(tokenizer, example.messages, train_on)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for pos, (start, end) in enumerate(enc["offset_mapping"]):
        if end <= start:
            continue
        for s, e in spans:
            if start >= s and end <= e:
                labels[pos] = ids[pos]
                break
    return Tokenized(ids, labels)


def tokenize_text(tokenizer: Any, example: TextExample) -> Tokenized:
    """Ids of plain text plus EOS; every token trains."""
    ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None:
        ids = [*ids, eos]
    return Tokenized(ids, list(ids))


def tokenize_example(tokenizer: Any, example: Example, train_on: str = "assistant") -> Tokenized:
    """Dispatch on the example kind; no truncation here (see :func:`tokenize_all`)."""
    if isinstance(example, ChatExample):
        return tokenize_chat(tokenizer, example, train_on)
    if isinstance(example, TextExample):
        return tokenize_text(tokenizer, example)
    raise DataError(f"cannot tokenise {type(example).__name__} for language-model training")


def tokenize_all(
    tokenizer: Any, examples: Sequence[Example], max_length: int, overlength: str = "truncate",
    train_on: str = "assistant", dropped: dict[str, int] | None = None,
) -> list[Tokenized]:
    """Tokenise examples and apply the over-length policy; examples left with nothing to train are dropped."""
    out: list[Tokenized] = []
    for index, example in enumerate(examples):
        tok = tokenize_example(tokenizer, example, train_on)
        if len(tok.input_ids) > max_length:
            if overlength == "error":
                where = example.meta.get("source", f"example {index}")
                raise DataError(f"{where}: {len(tok.input_ids)} tokens, over data.max_length = {max_length} "
                                "(set data.overlength = 'truncate' or 'drop', or raise max_length)")
            if overlength == "drop":
                if dropped is not None:
                    dropped["over-length"] = dropped.get("over-length", 0) + 1
                continue
            tok = Tokenized(tok.input_ids[:max_length], tok.labels[:max_length])
        if tok.trained == 0:
            if dropped is not None:
                dropped["nothing to train"] = dropped.get("nothing to train", 0) + 1
            continue
        out.append(tok)
    return out
