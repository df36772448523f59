"""The records data formats produce and objectives and evaluators consume.

A data format turns one raw row into one of these; the core tokenises them. They are plain
dataclasses so plugins can build them without importing torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

Message = dict[str, Any]
"""One chat turn: ``{"role": ..., "content": "..."}``, the role one of :data:`ROLES`. Optional keys (OpenAI's):
``tool_calls`` on an assistant turn (``[{"type": "function", "id": ..., "function": {"name": ...,
"arguments": {...}}}]``, arguments a dict), ``tool_call_id`` on a ``tool`` turn, ``name``, and ``weight: 0`` on
an assistant turn that is context, not trained. A conversation's tool list is ``ChatExample.meta["tools"]``."""

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
"""The roles of a :data:`Message`: instructions, the person, the model, and a tool's result. The core
accepts any role the model's chat template renders; first-party formats produce these."""

TRAINED_ROLES: tuple[str, ...] = ("assistant",)
"""The roles whose turns language-model objectives train (with their end-of-turn token); the rest are context."""


class RowError(ValueError):
    """Raised by a data format for a row it cannot use; ``reason`` is a short stable key for counting.

    :param reason: e.g. ``"missing field"``, ``"empty content"``, ``"wrong role order"``.
    :param detail: a sentence for the user, naming the field.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ChatExample:
    """A conversation; assistant turns are what is trained by default."""

    messages: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "chat"

    @property
    def prompt_messages(self) -> list[Message]:
        """All turns before the last assistant turn: what a model is given at evaluation."""
        return self.messages[:-1]

    @property
    def reference(self) -> str:
        """The last assistant turn: what a model should answer (its tool calls as JSON objects
        ``{"name": ..., "arguments": {...}}``, one per line, after any text)."""
        last = self.messages[-1]
        calls = [c.get("function", c) for c in last.get("tool_calls") or []]
        lines = [json.dumps({"name": c.get("name"), "arguments": c.get("arguments", {})}, ensure_ascii=False)
                 for c in calls]
        return "\n".join([last["content"], *lines] if last["content"] else lines)


@dataclass
class TextExample:
    """Plain text for continued pre-training: every token is trained."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "text"


@dataclass
class PreferenceExample:
    """A prompt with a preferred and a rejected answer."""

    prompt: list[Message]
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "preference"


@dataclass
class ClassificationExample:
    """A text and its label."""

    text: str
    label: str
    meta: dict[str, Any] = field(default_factory=dict)

    kind = "classification"


Example = Union[ChatExample, TextExample, PreferenceExample, ClassificationExample]
