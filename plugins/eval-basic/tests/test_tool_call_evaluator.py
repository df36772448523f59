"""The tool-call evaluator's parsing and scoring (generation stubbed; tests/test_data_tools.py trains a model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ftx.api import EvaluationSkipped
from ftx_eval_basic import ToolCallOptions
from ftx_eval_basic import toolcall as tc
from ftx_hookspecs import ChatExample

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]


def call_example(question: str, word: str, answered: bool = False) -> ChatExample:
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": {"word": word}}}]}
    messages = [{"role": "user", "content": question}, call]
    if answered:  # the call is in the middle: the result and an answer follow
        messages += [{"role": "tool", "content": "found"}, {"role": "assistant", "content": "It is there."}]
    return ChatExample(messages, {"tools": TOOLS})


def test_parse_calls_reads_json_objects_in_the_reply() -> None:
    assert tc.parse_calls('{"name": "f", "arguments": {"x": 1}}') == [("f", {"x": 1})]
    assert tc.parse_calls('<tool_call>\n{"name": "f", "arguments": "{\\"x\\": 1}"}\n</tool_call>') == [("f", {"x": 1})]
    assert tc.parse_calls('{"name": "f", "parameters": {}}\n{"name": "g", "arguments": {}}') == [("f", {}), ("g", {})]
    assert tc.parse_calls('{"type": "function", "function": {"name": "f", "arguments": {}}}') == [("f", {})]
    assert tc.parse_calls("no call here") is None
    assert tc.parse_calls('{"name": "f", "arguments": {"x": ') is None  # cut short: not valid JSON
    assert tc.parse_calls('{"x": 1}') is None  # JSON, but not a call


def test_scores_valid_json_name_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = [call_example("a", "cat"), call_example("b", "dog", answered=True), call_example("c", "owl"),
                call_example("d", "bee"), ChatExample([{"role": "user", "content": "e"}, {"role": "assistant", "content": "x"}])]
    replies = {"a": '{"name": "lookup", "arguments": {"word": "cat"}}', "b": '{"name": "lookup", "arguments": {"word": "cow"}}',
               "c": '{"name": "search", "arguments": {"word": "owl"}}', "d": "lookup bee"}
    seen = {}

    def fake(model, tok, prompts, **kw):
        seen["prompts"], seen["tools"] = prompts, kw["tools"]
        return [replies[p[-1]["content"]] for p in prompts]

    monkeypatch.setattr(tc, "generate_replies", fake)
    figures = tc.ToolCall(ToolCallOptions()).evaluate(None, examples, SimpleNamespace(tokenizer=None))
    assert figures == {"valid_json": 0.75, "right_name": 0.5, "right_arguments": 0.25}
    assert [len(p) for p in seen["prompts"]] == [1, 1, 1, 1]  # prompted up to the call, not the answer after it
    assert seen["tools"] == [TOOLS] * 4


def test_skipped_without_tool_calls() -> None:
    plain = [ChatExample([{"role": "user", "content": "e"}, {"role": "assistant", "content": "x"}])]
    with pytest.raises(EvaluationSkipped, match="tool_calls"):
        tc.ToolCall(ToolCallOptions()).evaluate(None, plain, SimpleNamespace(tokenizer=None))


def test_reference_of_a_call_is_its_json() -> None:
    assert call_example("a", "cat").reference == '{"name": "lookup", "arguments": {"word": "cat"}}'
