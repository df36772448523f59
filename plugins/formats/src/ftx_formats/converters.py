"""Row converters: each checks its fields and raises ``RowError`` with a countable reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ftx_hookspecs import (
    ChatExample,
    ClassificationExample,
    Message,
    PreferenceExample,
    RowError,
    TextExample,
)

from . import (
    AlpacaOptions,
    ClassificationOptions,
    CompletionOptions,
    ConversationOptions,
    PreferenceOptions,
    TextFormatOptions,
)

ROLE_NAMES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
}


def text_field(row: Mapping[str, Any], name: str, required: bool = True) -> str:
    """A string field; missing or empty ones raise a countable ``RowError``."""
    value = row.get(name)
    if value is None:
        if required:
            raise RowError("missing field", f"no {name!r} field")
        return ""
    if not isinstance(value, str):
        value = str(value)
    if required and not value.strip():
        raise RowError("empty content", f"{name!r} is empty")
    return value


def check_turns(messages: list[Message]) -> list[Message]:
    """Conversations alternate user/assistant after an optional system turn and end on the assistant."""
    if not messages:
        raise RowError("empty content", "conversation has no turns")
    body = messages[1:] if messages[0]["role"] == "system" else messages
    if not body:
        raise RowError("empty content", "conversation has only a system turn")
    for i, message in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            if message["role"] == "system":
                raise RowError("wrong role order", f"system turn at position {i + 1}; it must come first")
            raise RowError("wrong role order", f"turn {i + 1} is {message['role']!r}, expected {expected!r}")
        if not message["content"].strip():
            raise RowError("empty content", f"turn {i + 1} ({message['role']}) is empty")
    if body[-1]["role"] != "assistant":
        raise RowError("ends on a user turn", "the last turn must be the assistant's")
    return messages


def with_system(messages: list[Message], system: str | None) -> list[Message]:
    if system and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


class Alpaca:
    def __init__(self, options: AlpacaOptions) -> None:
        self.options = options

    def to_example(self, row: Mapping[str, Any]) -> ChatExample:
        instruction = text_field(row, "instruction")
        extra = text_field(row, "input", required=False).strip()
        output = text_field(row, "output")
        prompt = f"{instruction}\n{extra}" if extra else instruction
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        return ChatExample(with_system(messages, self.options.system))


class _Conversation:
    key = "messages"
    role_key = "role"
    content_key = "content"

    def __init__(self, options: ConversationOptions) -> None:
        self.options = options
        self.roles = {**ROLE_NAMES, **{k.lower(): v for k, v in options.roles.items()}}

    def to_example(self, row: Mapping[str, Any]) -> ChatExample:
        turns = row.get(self.key)
        if turns is None:
            raise RowError("missing field", f"no {self.key!r} field")
        if not isinstance(turns, list):
            raise RowError("wrong type", f"{self.key!r} must be a list of turns")
        messages: list[Message] = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, Mapping) or self.role_key not in turn or self.content_key not in turn:
                raise RowError("missing field", f"turn {i + 1} needs {self.role_key!r} and {self.content_key!r}")
            raw_role = str(turn[self.role_key]).lower()
            role = self.roles.get(raw_role)
            if role is None:
                raise RowError("unknown role", f"turn {i + 1} has role {turn[self.role_key]!r}; map it with [data] roles")
            messages.append({"role": role, "content": str(turn[self.content_key] or "")})
        return ChatExample(check_turns(with_system(messages, self.options.system)))


class Messages(_Conversation):
    key = "messages"


class ShareGPT(_Conversation):
    key = "conversations"
    role_key = "from"
    content_key = "value"


class Completion:
    def __init__(self, options: CompletionOptions) -> None:
        self.options = options

    def to_example(self, row: Mapping[str, Any]) -> ChatExample:
        prompt = text_field(row, "prompt")
        completion = text_field(row, "completion")
        return ChatExample([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}])


class Text:
    def __init__(self, options: TextFormatOptions) -> None:
        self.options = options

    def to_example(self, row: Mapping[str, Any]) -> TextExample:
        return TextExample(text_field(row, "text"))

    def to_examples(self, row: Mapping[str, Any]) -> list[TextExample]:
        """Pieces of a long text (a .txt file is one row), split at ``split_on``."""
        text = text_field(row, "text")
        if not self.options.split_on:
            return [TextExample(text)]
        pieces = [p.strip() for p in text.split(self.options.split_on)]
        kept = [TextExample(p) for p in pieces if p and len(p) >= self.options.min_chars]
        if not kept:
            raise RowError("empty content", "no piece of the text is long enough")
        return kept


def _as_messages(value: Any, name: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise RowError("wrong type", f"{name!r} must be a string or a list of {{role, content}} messages")


def _answer(value: Any, name: str) -> tuple[list[Message], str]:
    """An answer as (prefix turns, final assistant text): strings, or message lists ending on the assistant."""
    if value is None:
        raise RowError("missing field", f"no {name!r} field")
    if isinstance(value, str):
        return [], value
    messages = _as_messages(value, name)
    if not messages or messages[-1]["role"] != "assistant":
        raise RowError("wrong role order", f"{name!r} must end with an assistant message")
    return messages[:-1], messages[-1]["content"]


def split_shared_prefix(chosen: str, rejected: str) -> tuple[str, str, str]:
    """HH-RLHF style: two full transcripts sharing a prompt; split at the last ``Assistant:`` they share."""
    marker = "\n\nAssistant:"
    common = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        common += 1
    cut = chosen.rfind(marker, 0, common + 1)
    if cut < 0:
        raise RowError("no shared prompt", "chosen and rejected share no prompt ending in 'Assistant:'")
    cut += len(marker)
    return chosen[:cut], chosen[cut:].strip(), rejected[cut:].strip()


class Preference:
    def __init__(self, options: PreferenceOptions) -> None:
        self.options = options

    def to_example(self, row: Mapping[str, Any]) -> PreferenceExample:
        chosen_raw = row.get("chosen")
        rejected_raw = row.get("rejected")
        if "prompt" not in row or row.get("prompt") in (None, ""):
            if isinstance(chosen_raw, str) and isinstance(rejected_raw, str):
                prompt_text, chosen, rejected = split_shared_prefix(chosen_raw, rejected_raw)
                prompt = [{"role": "user", "content": prompt_text.strip()}]
            else:
                raise RowError("missing field", "no 'prompt' field")
        else:
            prompt = _as_messages(row["prompt"], "prompt")
            prefix_c, chosen = _answer(chosen_raw, "chosen")
            prefix_r, rejected = _answer(rejected_raw, "rejected")
            if prefix_c != prefix_r:
                raise RowError("mismatched pair", "chosen and rejected continue different conversations")
            prompt = prompt + prefix_c
        if not chosen.strip() or not rejected.strip():
            raise RowError("empty content", "chosen or rejected is empty")
        if chosen.strip() == rejected.strip():
            raise RowError("chosen equals rejected", "the pair teaches nothing")
        return PreferenceExample(prompt=prompt, chosen=chosen, rejected=rejected)


class Classification:
    def __init__(self, options: ClassificationOptions) -> None:
        self.options = options

    def to_example(self, row: Mapping[str, Any]) -> ClassificationExample:
        text = text_field(row, "text")
        label = text_field(row, "label").strip()
        if self.options.labels and label not in self.options.labels:
            raise RowError("unknown label", f"label {label!r} is not one of {self.options.labels}")
        return ClassificationExample(text=text, label=label)
