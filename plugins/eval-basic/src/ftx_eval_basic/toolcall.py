"""The ``tool-call`` evaluator: the greedy reply at each held-out tool call, parsed as calls and compared."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ftx.api import EvaluationSkipped, generate_replies
from ftx_hookspecs import ChatExample, Example, Message, RunContext

from . import ToolCallOptions


def reference_call(example: ChatExample) -> tuple[list[Message], list[tuple[str, Any]]] | None:
    """The turns before the example's first assistant turn that calls tools, and its calls as (name, arguments)."""
    for i, message in enumerate(example.messages):
        calls = message.get("tool_calls") if message["role"] == "assistant" else None
        if calls:
            wanted = []
            for call in calls:
                function = call.get("function", call)
                wanted.append((function.get("name"), _arguments(function.get("arguments", {}))))
            return example.messages[:i], wanted
    return None


def _arguments(value: Any) -> Any:
    """Arguments as a dict: OpenAI writes them as a JSON string."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_calls(reply: str) -> list[tuple[str, Any]] | None:
    """The calls a reply makes: the JSON objects ``{"name": ..., "arguments": {...}}`` in it, in order (text
    around them, e.g. ``<tool_call>`` tags, is skipped); ``None`` when it holds no such object."""
    decoder = json.JSONDecoder()
    calls: list[tuple[str, Any]] = []
    at = reply.find("{")
    while at >= 0:
        try:
            value, end = decoder.raw_decode(reply, at)
        except json.JSONDecodeError:
            at = reply.find("{", at + 1)
            continue
        if isinstance(value, Mapping):
            value = value.get("function", value) if isinstance(value.get("function"), Mapping) else value
            if isinstance(value.get("name"), str):
                arguments = value.get("arguments", value.get("parameters", {}))
                calls.append((value["name"], _arguments(arguments)))
        at = reply.find("{", end)
    return calls or None


class ToolCall:
    """Share of held-out tool calls the model makes as valid JSON, with the right function, with the right arguments."""

    def __init__(self, options: ToolCallOptions) -> None:
        self.options = options

    def evaluate(self, model: Any, examples: Sequence[Example], ctx: RunContext) -> dict[str, float]:
        cases = []
        for example in examples:
            if isinstance(example, ChatExample):
                found = reference_call(example)
                if found is not None:
                    cases.append((found[0], found[1], example.meta.get("tools")))
        if self.options.limit:
            cases = cases[: self.options.limit]
        if not cases:
            raise EvaluationSkipped("no held-out example has an assistant turn with tool_calls")
        replies = generate_replies(
            model, ctx.tokenizer, [c[0] for c in cases], max_new_tokens=self.options.max_new_tokens,
            batch_size=self.options.batch_size, tools=[c[2] for c in cases],
        )
        valid = names = arguments = 0
        for reply, (_, wanted, _) in zip(replies, cases):
            made = parse_calls(reply)
            if made is None:
                continue
            valid += 1
            if [n for n, _ in made] == [n for n, _ in wanted]:
                names += 1
                arguments += made == wanted
        n = len(cases)
        return {"valid_json": valid / n, "right_name": names / n, "right_arguments": arguments / n}
