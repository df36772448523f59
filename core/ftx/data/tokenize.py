"""Tokenise examples with exact loss masks: only assistant turns (and their end-of-turn token) train.

The chat template is rendered to text once; the character span of every assistant turn is found by
rendering the conversation up to that turn (its end-of-turn marker included), and the text is
tokenised piece by piece between those boundaries. This works for any template whose renderings
of growing prefixes extend each other; others are refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ftx_hookspecs import TRAINED_ROLES, ChatExample, Example, Message, TextExample

from ..errors import DataError
from .chat import prepare_chat

IGNORE_INDEX = -100


@dataclass
class Tokenized:
    """Token ids and labels (``-100`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def assistant_spans(
    tokenizer: Any, messages: Sequence[Message], train_on: str = "assistant", tools: Sequence[Any] | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to train, each ending after its end-of-turn marker.

    ``tools`` (``meta["tools"]``) go where the template puts them (:mod:`ftx.data.chat`); assistant turns with
    ``weight: 0`` are not trained; tool calls are assistant turns and train, tool results do not.
    """
    messages, tool_list = prepare_chat(tokenizer, messages, tools)

    def render(turns: Sequence[Message], generation_prompt: bool = False) -> str:
        return str(tokenizer.apply_chat_template(list(turns), tools=tool_list, tokenize=False,
                                                 add_generation_prompt=generation_prompt))

    text = render(messages)
    if train_on == "all":
        return text, [(0, len(text))]
    spans: list[tuple[int, int]] = []
    assistant_turns = [i for i, m in enumerate(messages) if m["role"] in TRAINED_ROLES and m.get("weight", 1) != 0]
    if train_on == "last":
        assistant_turns = assistant_turns[-1:]
    for i in assistant_turns:
        before = render(messages[:i], True) if i else ""
        upto = render(messages[: i + 1])
        if not text.startswith(upto) or not upto.startswith(before):
            raise DataError(
                "the chat template does not render conversations prefix by prefix, so assistant turns "
                "cannot be located; set model.chat_template to a built-in template such as 'chatml'"
            )
        end = len(upto.rstrip())  # the end-of-turn token trains; the newline after it does not
        spans.append((len(before), end))
    return text, spans


def tokenize_chat(tokenizer: Any, example: ChatExample, train_on: str = "assistant") -> Tokenized:
    """Ids and labels of a whole conversation, masked to the assistant turns.

    The rendered text is cut at the trained spans and each piece is tokenised on its own, so no
    token straddles a prompt/answer boundary and the prompt before each answer is tokenised as it
    is at generation time (a generation prompt ending in ``"\n\n"`` is one GPT-2 token there,
    not two tokens merged into the answer's first word).
    """
    text, spans = assistant_spans(tokenizer, example.messages, train_on, example.meta.get("tools"))
    ids: list[int] = []
    labels: list[int] = []

    def piece(start: int, end: int, trained: bool) -> None:
        if end <= start:
            return
        part = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
        ids.extend(part)
        labels.extend(part if trained else [IGNORE_INDEX] * len(part))

    at = 0
    for start, end in spans:
        piece(at, start, False)
        piece(start, end, True)
        at = end
    piece(at, len(text), False)
    return Tokenized(ids, labels)


def tokenize_text(tokenizer: Any, example: TextExample) -> Tokenized:
    """Ids of plain text plus EOS; every token trains."""
    ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None:
        ids = [*ids, eos]
    return Tokenized(ids, list(ids))


def tokenize_example(tokenizer: Any, example: Example, train_on: str = "assistant") -> Tokenized:
    """Dispatch on the example kind; no truncation here (see :func:`ftx.data.encode.tokenize_all`)."""
    if isinstance(example, ChatExample):
        return tokenize_chat(tokenizer, example, train_on)
    if isinstance(example, TextExample):
        return tokenize_text(tokenizer, example)
    raise DataError(f"cannot tokenise {type(example).__name__} for language-model training")


def describe_source(source: Any, index: int) -> str:
    """``"data.jsonl:12"`` (an example's ``meta["source"]``) as ``"data.jsonl, row 12"``, like bad-row errors."""
    if isinstance(source, str):
        path, _, row = source.rpartition(":")
        if path and row.isdigit():
            return f"{path}, row {row}"
        return source
    return f"example {index + 1}"


def drop_oldest_turns(tokenizer: Any, example: ChatExample, max_length: int, train_on: str = "assistant") -> Tokenized | None:
    """The conversation without its oldest exchanges (a user turn up to the next assistant turn, the system
    turn kept) until it fits ``max_length``, so the last, trained turns survive; ``None`` when even the last
    exchange alone is too long (the caller then truncates it)."""
    messages = list(example.messages)
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    body = messages[len(head):]
    while True:
        # an exchange ends on an assistant turn that answers (not one that calls a tool and awaits its result)
        first_answer = next((i for i, m in enumerate(body) if m["role"] == "assistant" and not m.get("tool_calls")), None)
        if first_answer is None or not any(m["role"] == "assistant" for m in body[first_answer + 1 :]):
            return None  # one exchange left: nothing older to drop
        body = body[first_answer + 1 :]
        tok = tokenize_chat(tokenizer, ChatExample([*head, *body], example.meta), train_on)
        if len(tok.input_ids) <= max_length:
            return tok


def tokenize_all_exact(
    tokenizer: Any, examples: Sequence[Example], max_length: int, overlength: str = "truncate",
    train_on: str = "assistant", dropped: dict[str, int] | None = None, *,
    first_bad: dict[str, str] | None = None, strict: bool = False,
) -> list[Tokenized]:
    """:func:`ftx.data.encode.tokenize_all` one example at a time through the chat template: the reference the batched path equals.

    ``overlength``: ``truncate`` cuts at ``max_length``, ``drop`` skips the example (counted as
    ``over-length`` in ``dropped``), ``error`` stops naming the example's file and row,
    ``drop-oldest-turns`` removes a conversation's oldest exchanges until it fits (its last, trained
    turns survive) and truncates what still does not fit. With
    ``strict`` every drop is an error naming file and row, as for bad rows.
    """
    out: list[Tokenized] = []

    def drop(reason: str, where: str, detail: str) -> None:
        if strict:
            raise DataError(f"{where}: {detail} (data.strict = true stops at the first bad row)")
        if dropped is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
        if first_bad is not None:
            first_bad.setdefault(reason, f"{where}: {detail}")

    for index, example in enumerate(examples):
        where = describe_source(example.meta.get("source"), index)
        tok = tokenize_example(tokenizer, example, train_on)
        if len(tok.input_ids) > max_length:
            detail = f"{len(tok.input_ids)} tokens, over data.max_length = {max_length}"
            if overlength == "error":
                raise DataError(f"{where}: {detail} (set data.overlength = 'truncate' or 'drop', or raise max_length)")
            if overlength == "drop":
                drop("over-length", where, detail)
                continue
            shorter = None
            if overlength == "drop-oldest-turns" and isinstance(example, ChatExample):
                shorter = drop_oldest_turns(tokenizer, example, max_length, train_on)
            tok = shorter or Tokenized(tok.input_ids[:max_length], tok.labels[:max_length])
        if tok.trained == 0:
            drop("nothing to train", where, "no trained token left (truncated away or no assistant turn)")
            continue
        out.append(tok)
    return out
