"""ftx plugin: the standard data formats. Converters live in :mod:`ftx_formats.converters`."""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import DataFormatSpec, Options, hookimpl
from pydantic import Field


class AlpacaOptions(Options):
    """``[data] format = "alpaca"``."""

    system: str | None = Field(None, description="a system prompt added to every conversation")


class ConversationOptions(Options):
    """``[data] format = "sharegpt"`` or ``"messages"``: conversations, tool calling included."""

    system: str | None = Field(None, description="a system prompt for conversations that have none")
    roles: dict[str, str] = Field(
        default_factory=dict, description="extra role names mapped onto system/user/assistant/tool (or function_call: an assistant "
        "turn holding a call as JSON), e.g. {bot = 'assistant'}"
    )


class CompletionOptions(Options):
    """``[data] format = "completion"``."""


class TextFormatOptions(Options):
    """``[data] format = "text"``."""

    split_on: str | None = Field(
        "\n\n", description="split a text into examples at this separator (None keeps each record whole)"
    )
    min_chars: int = Field(1, ge=0, description="drop pieces shorter than this")


class PreferenceOptions(Options):
    """``[data] format = "preference"``."""


class ClassificationOptions(Options):
    """``[data] format = "classification"``."""

    labels: list[str] = Field(default_factory=list, description="allowed labels; others are counted as unknown")


FORMATS = (
    DataFormatSpec("alpaca", "Instruction data: instruction, optional input, output.",
                   "ftx_formats.converters:Alpaca", AlpacaOptions, example_kind="chat",
                   fields=("instruction", "input", "output")),
    DataFormatSpec("sharegpt", "Conversations: conversations = [{from, value}], human/gpt and other role names; "
                   "function_call/observation turns, tools and system columns (LLaMA-Factory).",
                   "ftx_formats.converters:ShareGPT", ConversationOptions, example_kind="chat",
                   fields=("conversations",)),
    DataFormatSpec("messages", "OpenAI chat files: messages = [{role, content}], content parts, weight, name; tools, "
                   "tool_calls and tool turns.",
                   "ftx_formats.converters:Messages", ConversationOptions, example_kind="chat",
                   fields=("messages",)),
    DataFormatSpec("completion", "Prompt and completion pairs.",
                   "ftx_formats.converters:Completion", CompletionOptions, example_kind="chat",
                   fields=("prompt", "completion")),
    DataFormatSpec("text", "Plain text for continued pre-training (.txt files or a text field).",
                   "ftx_formats.converters:Text", TextFormatOptions, example_kind="text", fields=("text",)),
    DataFormatSpec("preference", "Preference pairs: prompt, chosen, rejected (strings or message lists).",
                   "ftx_formats.converters:Preference", PreferenceOptions, example_kind="preference",
                   fields=("prompt", "chosen", "rejected")),
    DataFormatSpec("classification", "Texts with labels: text, label.",
                   "ftx_formats.converters:Classification", ClassificationOptions,
                   example_kind="classification", fields=("text", "label")),
)


@hookimpl
def ftx_register_data_formats(register: Callable[[DataFormatSpec], None]) -> None:
    for spec in FORMATS:
        register(spec)
