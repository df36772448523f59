"""Row converters: each checks its fields and raises ``RowError`` with a countable reason."""

from __future__ import annotations

import json
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
    "developer": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
    "ipython": "tool",
    "function_call": "function_call",
}
"""Role names in the wild mapped onto ftx's roles; ``function_call`` (LLaMA-Factory's sharegpt) is an assistant
turn whose content is the call as JSON."""


def json_kind(value: Any) -> str:
    """How a JSON value is named in an error: ``a number``, ``an object``, ..."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def text_field(row: Mapping[str, Any], name: str, required: bool = True) -> str:
    """A string field (numbers are written as JSON writes them); missing or empty ones raise a countable ``RowError``,
    and so do objects, lists and true/false, which would otherwise be trained as Python's repr."""
    value = row.get(name)
    if value is None:
        if required:
            raise RowError("missing field", f"no {name!r} field")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError("wrong type", f"{name!r} is {json_kind(value)}, not text")
    if not isinstance(value, str):
        value = json.dumps(value)
    if required and not value.strip():
        raise RowError("empty content", f"{name!r} is empty")
    return value


def content_text(value: Any, where: str) -> str:
    """A message's content: a string, a number, or OpenAI's list of parts (text parts joined); ``None`` is empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            if isinstance(part, str):
                texts.append(part)
                continue
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                shown = kind if kind else json_kind(part)
                raise RowError("unsupported content part",
                               f"{where}: content part {j + 1} is {shown!r}; only text parts can be trained")
            texts.append(part["text"])
        return "".join(texts)
    raise RowError("wrong type", f"{where}: content is {json_kind(value)}, not text")


def parse_json_text(value: Any, what: str) -> Any:
    """A JSON value given as itself or as a JSON string (as in LLaMA-Factory's ``tools`` column)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError("invalid json", f"{what} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    return value


def parse_tools(value: Any) -> list[dict[str, Any]]:
    """The ``tools`` column as OpenAI's ``[{"type": "function", "function": {name, description, parameters}}]``;
    bare function definitions (LLaMA-Factory) are wrapped. Missing or empty: no tools."""
    if value is None or value == "":
        return []
    tools = parse_json_text(value, "'tools'")
    if isinstance(tools, Mapping):
        tools = [tools]
    if not isinstance(tools, list):
        raise RowError("wrong type", f"'tools' is {json_kind(tools)}; it must be a list of function definitions")
    out: list[dict[str, Any]] = []
    for j, tool in enumerate(tools):
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
            raise RowError("invalid tool", f"tool {j + 1} in 'tools' has no function name")
        out.append({"type": "function", "function": dict(function)})
    return out


def parse_call(call: Any, where: str) -> dict[str, Any]:
    """One tool call as ``{"type": "function", "function": {"name", "arguments": dict}}`` (+ ``id`` when given);
    OpenAI's arguments are a JSON string, LLaMA-Factory's an object: both become a dict."""
    if not isinstance(call, Mapping):
        raise RowError("invalid tool call", f"{where}: a call must be an object, not {json_kind(call)}")
    function = call.get("function", call)
    if not isinstance(function, Mapping):
        raise RowError("invalid tool call", f"{where}: 'function' must be an object")
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RowError("invalid tool call", f"{where}: the call has no function name")
    arguments = parse_json_text(function.get("arguments", {}), f"{where}: the arguments of {name!r}")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        raise RowError("invalid tool call", f"{where}: the arguments of {name!r} must be an object")
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": dict(arguments)}}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out


def check_turns(messages: list[Message]) -> list[Message]:
    """The order OpenAI's chat format allows: an optional first system turn, then user and assistant turns in turn
    (an assistant turn may follow the system turn directly); an assistant turn that calls tools is followed by
    their results (``tool`` turns) or ends the conversation; results are followed by the next assistant (or user)
    turn. The last turn is the assistant's, and at least one assistant turn is trained (``weight`` not 0)."""
    if not messages:
        raise RowError("empty content", "conversation has no turns")
    previous = "start"
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message["role"]
        calls = message.get("tool_calls") or []
        allowed = {"system": ("start",), "user": ("start", "system", "assistant", "tool"),
                   "assistant": ("system", "user", "tool"), "tool": ("tool", "tool call")}.get(role)
        if allowed is not None and previous not in allowed:
            if role == "system":
                detail = f"system turn at position {i + 1}; it must come first"
            elif role == "tool":
                detail = f"turn {i + 1} is a tool result with no tool call before it"
            elif previous == "start":
                detail = f"turn {i + 1} is {role!r}; a conversation starts with a system or user turn"
            elif previous == "tool call":
                detail = f"turn {i + 1} is {role!r} right after a tool call; the call's result (a tool turn) comes first"
            else:
                detail = f"turn {i + 1} is {role!r} right after a {previous!r} turn"
            raise RowError("wrong role order", detail)
        if role == "tool" and call_ids and message.get("tool_call_id") not in (None, *call_ids):
            raise RowError("unknown tool call id", f"turn {i + 1} answers call {message['tool_call_id']!r}, "
                           f"which the assistant did not make (ids: {', '.join(sorted(call_ids))})")
        if not calls and not message["content"].strip():
            raise RowError("empty content", f"turn {i + 1} ({role}) is empty")
        if calls:
            call_ids = {c["id"] for c in calls if "id" in c}
        previous = "tool call" if calls else role
    last = messages[-1]["role"]
    if last != "assistant":
        if len(messages) == 1 and last == "system":
            raise RowError("empty content", "conversation has only a system turn")
        raise RowError(f"ends on a {last} turn", "the last turn must be the assistant's")
    if all(m.get("weight", 1) == 0 for m in messages if m["role"] == "assistant"):
        raise RowError("nothing to train", "every assistant turn has weight 0")
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
    """OpenAI messages and sharegpt conversations, tool calling included (both shapes in both formats)."""

    key = "messages"
    role_key = "role"
    content_key = "content"

    def __init__(self, options: ConversationOptions) -> None:
        self.options = options
        self.roles = {**ROLE_NAMES, **{k.lower(): v for k, v in options.roles.items()}}

    def message(self, i: int, turn: Any) -> Message:
        """One turn as a :data:`Message`: content as text, calls parsed, ``weight`` and ``name`` kept."""
        where = f"turn {i + 1}"
        if not isinstance(turn, Mapping) or self.role_key not in turn:
            raise RowError("missing field", f"{where} needs {self.role_key!r} and {self.content_key!r}")
        raw = turn[self.role_key]
        role = self.roles.get(str(raw).lower()) if isinstance(raw, str) else None
        if role is None:
            raise RowError("unknown role", f"{where} has role {raw!r}; map it with [data] roles")
        calls = turn.get("tool_calls")
        if not calls and isinstance(turn.get("function_call"), Mapping):  # OpenAI's older single-call key
            calls = [turn["function_call"]]
        if self.content_key not in turn and not calls:
            raise RowError("missing field", f"{where} needs {self.role_key!r} and {self.content_key!r}")
        content = turn.get(self.content_key)
        message: Message
        if role == "function_call":  # LLaMA-Factory: the call (or a list of calls) as JSON in the content
            parsed = parse_json_text(content, f"{where} (function_call)")
            listed = parsed if isinstance(parsed, list) else [parsed]
            message = {"role": "assistant", "content": "",
                       "tool_calls": [parse_call(c, f"{where} (function_call)") for c in listed]}
        else:
            message = {"role": role, "content": content_text(content, where)}
            if calls:
                if role != "assistant" or not isinstance(calls, list):
                    raise RowError("invalid tool call", f"{where}: 'tool_calls' must be a list on an assistant turn")
                message["tool_calls"] = [parse_call(c, f"{where} call {j + 1}") for j, c in enumerate(calls)]
        if role == "tool" and turn.get("tool_call_id") is not None:
            message["tool_call_id"] = str(turn["tool_call_id"])
        name = turn.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise RowError("wrong type", f"{where}: 'name' is {json_kind(name)}, not text")
            message["name"] = name
        if "weight" in turn and turn["weight"] is not None:
            weight = turn["weight"]
            if weight not in (0, 1) or isinstance(weight, bool):
                raise RowError("wrong type", f"{where}: 'weight' is {weight!r}; it must be 0 or 1")
            if message["role"] != "assistant":
                raise RowError("wrong type", f"{where}: 'weight' is only for assistant turns")
            if weight == 0:
                message["weight"] = 0
        return message

    def row_system(self, row: Mapping[str, Any]) -> str | None:
        return self.options.system

    def to_example(self, row: Mapping[str, Any]) -> ChatExample:
        turns = row.get(self.key)
        if turns is None:
            raise RowError("missing field", f"no {self.key!r} field")
        if not isinstance(turns, list):
            raise RowError("wrong type", f"{self.key!r} must be a list of turns")
        messages = [self.message(i, turn) for i, turn in enumerate(turns)]
        messages = check_turns(with_system(messages, self.row_system(row)))
        tools = parse_tools(row.get("tools") if row.get("tools") not in (None, "") else row.get("functions"))
        return ChatExample(messages, {"tools": tools} if tools else {})


class Messages(_Conversation):
    key = "messages"


class ShareGPT(_Conversation):
    key = "conversations"
    role_key = "from"
    content_key = "value"

    def row_system(self, row: Mapping[str, Any]) -> str | None:
        """LLaMA-Factory's sharegpt keeps the system prompt in a ``system`` column."""
        system = row.get("system")
        if system is not None and system != "":
            return text_field(row, "system")
        return self.options.system


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
        return [{"role": str(m["role"]), "content": content_text(m["content"], f"{name!r} message {i + 1}")}
                for i, m in enumerate(value)]
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
