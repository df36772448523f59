"""Render a conversation with the chat template, tool calling included, the same way for training and generation.

A conversation's tools (``ChatExample.meta["tools"]``) are passed to ``apply_chat_template(tools=...)`` and
assistant calls (a message's ``tool_calls``) are left for the template, when the template renders them (probed
once per template). Templates that ignore them get the documented fallback instead: the tool list as JSON at
the end of the system message (:data:`TOOLS_HEADER` first), each call as a JSON object
``{"name": ..., "arguments": {...}}`` on its own line of the assistant's content, and tool results as a user
turn, ``Tool result: ...`` per line. The built-in ``chatml`` template renders tools and calls exactly like that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

TOOLS_HEADER = 'You can call these tools. To call one, answer with a JSON object {"name": ..., "arguments": {...}}.\n'
"""Written before the tool list (as JSON) in the system message by the fallback and the built-in ``chatml``."""

TOOL_RESULT_PREFIX = "Tool result: "

_PROBE_TOOL = "ftx_probe_tool_list"
_PROBE_CALL = "ftx_probe_tool_call"
_SUPPORT: dict[str, tuple[bool, bool]] = {}


def call_object(call: Mapping[str, Any]) -> dict[str, Any]:
    """A tool call as ``{"name", "arguments"}``, from OpenAI's ``{"type", "function": {...}}`` or the flat shape."""
    function = call.get("function", call)
    return {"name": function.get("name"), "arguments": function.get("arguments", {})}


def calls_text(calls: Sequence[Mapping[str, Any]]) -> str:
    """Tool calls as JSON objects, one per line: what the fallback trains the assistant to write."""
    return "\n".join(json.dumps(call_object(c), ensure_ascii=False) for c in calls)


def tools_text(tools: Sequence[Any]) -> str:
    """The tool list as the fallback writes it into the system message."""
    return TOOLS_HEADER + json.dumps(list(tools), ensure_ascii=False)


def _render(tokenizer: Any, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> str:
    return str(tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, **kwargs))


def tool_support(tokenizer: Any) -> tuple[bool, bool]:
    """Whether the tokenizer's chat template renders ``tools=`` and assistant ``tool_calls`` (probed, cached by template)."""
    template = str(getattr(tokenizer, "chat_template", None) or "")
    if template in _SUPPORT:
        return _SUPPORT[template]
    user = {"role": "user", "content": "hi"}
    tool = {"type": "function", "function": {"name": _PROBE_TOOL, "description": "a probe",
                                             "parameters": {"type": "object", "properties": {}}}}
    call = {"type": "function", "id": "call0", "function": {"name": _PROBE_CALL, "arguments": {"x": 1}}}
    try:
        tools_ok = _PROBE_TOOL in _render(tokenizer, [user], tools=[tool])
    except Exception:  # noqa: BLE001 - a template that fails on tools does not support them
        tools_ok = False
    try:
        calls_ok = _PROBE_CALL in _render(tokenizer, [user, {"role": "assistant", "content": "", "tool_calls": [call]}])
    except Exception:  # noqa: BLE001 - likewise for calls
        calls_ok = False
    _SUPPORT[template] = (tools_ok, calls_ok)
    return tools_ok, calls_ok


def _system_with_tools(messages: list[dict[str, Any]], tools: Sequence[Any]) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{tools_text(tools)}".lstrip("\n")
        return [first, *messages[1:]]
    return [{"role": "system", "content": tools_text(tools)}, *messages]


def prepare_chat(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None = None
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """The messages and the ``tools=`` argument to render with: unchanged where the template knows tools, else
    the fallback applied (see the module's docstring). The trained assistant turns keep their role and keys."""
    out = [dict(m) for m in messages]
    has_calls = any(m.get("tool_calls") for m in out) or any(m["role"] == "tool" for m in out)
    if not tools and not has_calls:
        return out, None
    tools_ok, calls_ok = tool_support(tokenizer)
    if has_calls and not calls_ok:
        plain: list[dict[str, Any]] = []
        for message in out:
            if message["role"] == "tool":
                line = TOOL_RESULT_PREFIX + str(message.get("content") or "")
                if plain and plain[-1].get("_tool_results"):
                    plain[-1]["content"] += "\n" + line
                else:
                    plain.append({"role": "user", "content": line, "_tool_results": True})
                continue
            calls = message.pop("tool_calls", None)
            message.pop("tool_call_id", None)
            if calls:
                content = str(message.get("content") or "")
                message["content"] = f"{content}\n{calls_text(calls)}" if content else calls_text(calls)
            plain.append(message)
        out = [{k: v for k, v in m.items() if k != "_tool_results"} for m in plain]
    if tools and not tools_ok:
        return _system_with_tools(out, tools), None
    return out, list(tools) if tools else None


def render_chat(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None = None,
    *, add_generation_prompt: bool = False,
) -> str:
    """The conversation as text through the chat template, its tools and calls placed as :func:`prepare_chat` says."""
    prepared, tool_list = prepare_chat(tokenizer, messages, tools)
    return _render(tokenizer, prepared, tools=tool_list, add_generation_prompt=add_generation_prompt)
