"""Tool calling and OpenAI chat files in full: both tool-calling shapes load, render their tools where the
template puts them, train exactly the calls and answers, and the ``tool-call`` evaluator scores the calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ftx.cli import main
from ftx.data.chat import TOOLS_HEADER, render_chat
from ftx.data.tokenize import IGNORE_INDEX, tokenize_chat
from ftx.models.templates import ZEPHYR
from ftx.testing import tiny_model_recipe_table, tiny_recipe
from ftx_formats import ConversationOptions
from ftx_formats.converters import Messages, ShareGPT
from ftx_hookspecs import ChatExample, RowError

from tests.test_data_formats import prepare

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

OPENAI_ROW = {
    "tools": [WEATHER],
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        {"role": "assistant", "content": "Sunny and 21 C."},
    ],
}

SHAREGPT_ROW = {  # LLaMA-Factory's sharegpt shape: tools as a JSON string, function_call / observation turns
    "system": "Be brief.",
    "tools": json.dumps([WEATHER["function"]]),
    "conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": "sunny, 21 C"},
        {"from": "gpt", "value": "Sunny and 21 C."},
    ],
}

CALL_TEXT = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def messages(row: dict[str, Any]) -> ChatExample:
    return Messages(ConversationOptions()).to_example(row)


def trained_pieces(tokenizer: Any, tok: Any) -> list[str]:
    """The decoded runs of trained tokens, in order."""
    pieces: list[list[int]] = []
    previous = False
    for token, label in zip(tok.input_ids, tok.labels):
        trained = label != IGNORE_INDEX
        if trained and not previous:
            pieces.append([])
        if trained:
            pieces[-1].append(token)
        previous = trained
    return [tokenizer.decode(p) for p in pieces]


# -- converting rows ---------------------------------------------------------------------------


def test_both_shapes_give_the_same_example():
    openai = messages(OPENAI_ROW)
    sharegpt = ShareGPT(ConversationOptions()).to_example(SHAREGPT_ROW)
    assert openai.meta["tools"] == sharegpt.meta["tools"] == [WEATHER]
    for example in (openai, sharegpt):
        assert [m["role"] for m in example.messages] == ["system", "user", "assistant", "tool", "assistant"]
        call = example.messages[2]["tool_calls"][0]["function"]
        assert call == {"name": "get_weather", "arguments": {"city": "Paris"}}  # OpenAI's JSON string parsed
        assert example.messages[2]["content"] == ""
    assert openai.messages[3]["tool_call_id"] == "call_1"


def test_openai_legacy_functions_and_function_call():
    example = messages({"functions": [WEATHER["function"]], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None,
         "function_call": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."}]})
    assert example.meta["tools"] == [WEATHER]
    assert example.messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert example.messages[2] == {"role": "tool", "content": "sunny", "name": "get_weather"}


def test_system_then_assistant_is_a_valid_row():
    example = messages({"messages": [{"role": "system", "content": "Say hello."},
                                     {"role": "assistant", "content": "Hello!"}]})
    assert [m["role"] for m in example.messages] == ["system", "assistant"]
    example = messages({"messages": [{"role": "developer", "content": "Say hello."},  # OpenAI's newer name
                                     {"role": "assistant", "content": "Hello!"}]})
    assert example.messages[0] == {"role": "system", "content": "Say hello."}


def test_content_parts_name_and_weight():
    example = messages({"messages": [
        {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "old answer", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "new answer", "weight": 1},
    ]})
    assert example.messages[0] == {"role": "user", "content": "Hi there", "name": "ann"}
    assert example.messages[1]["weight"] == 0 and "weight" not in example.messages[3]


@pytest.mark.parametrize(("turns", "reason", "detail"), [
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
      {"role": "assistant", "content": "a"}], "unsupported content part", "'image_url'"),
    ([{"role": "user", "content": {"text": "hi"}}, {"role": "assistant", "content": "a"}], "wrong type", "an object"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": ["a", 1]}],
     "unsupported content part", "a number"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": True}], "wrong type", "true/false"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": 0}],
     "nothing to train", "weight 0"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": 0.5}], "wrong type", "0 or 1"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}],
     "wrong role order", "no tool call before it"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]},
      {"role": "user", "content": "b"}, {"role": "assistant", "content": "a"}], "wrong role order", "result"),
    ([{"role": "user", "content": "hi"},
      {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}],
     "invalid json", "arguments of 'f'"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f"}}]},
      {"role": "tool", "tool_call_id": "b", "content": "r"}, {"role": "assistant", "content": "x"}],
     "unknown tool call id", "'b'"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}, {"role": "tool", "content": "r"}],
     "wrong role order", "no tool call"),
])
def test_real_defects_are_named(turns, reason, detail):
    with pytest.raises(RowError) as caught:
        messages({"messages": turns})
    assert caught.value.reason == reason
    assert detail in caught.value.detail


def test_non_string_fields_are_never_trained_as_python_reprs(plugin_manager, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Add.", "input": "1 2", "output": 3},
        {"instruction": "List.", "output": ["a", "b"]},
        {"instruction": "Add.", "input": "2 2", "output": 4.5},
    ]) + "\n", encoding="utf-8")
    data = prepare(plugin_manager, {"format": "alpaca", "train": str(path), "max_bad_fraction": 0.9})
    assert sorted(e.messages[-1]["content"] for e in data.train + data.eval) == ["3", "4.5"]
    assert data.report.first_bad["wrong type"] == f"{path}, row 2: wrong type: 'output' is a list, not text"


# -- rendering and masks -----------------------------------------------------------------------


@pytest.mark.parametrize("row", [OPENAI_ROW, SHAREGPT_ROW], ids=["openai", "sharegpt"])
def test_calls_and_answers_train_and_the_tool_list_is_in_the_prompt(row, tiny_tokenizer):
    example = messages(row) if "messages" in row else ShareGPT(ConversationOptions()).to_example(row)
    text = render_chat(tiny_tokenizer, example.messages, example.meta["tools"])
    assert text.startswith("<|im_start|>system\nBe brief.\n\n" + TOOLS_HEADER)
    assert json.dumps([WEATHER]) in text
    tok = tokenize_chat(tiny_tokenizer, example)
    assert trained_pieces(tiny_tokenizer, tok) == [CALL_TEXT + "<|im_end|>", "Sunny and 21 C.<|im_end|>"]


def test_a_template_without_tools_gets_the_fallback(tiny_tokenizer):
    tokenizer = type(tiny_tokenizer).from_pretrained(tiny_tokenizer.name_or_path)
    tokenizer.chat_template = ZEPHYR  # knows nothing of tools or calls
    example = messages(OPENAI_ROW)
    text = render_chat(tokenizer, example.messages, example.meta["tools"])
    assert "<|system|>\nBe brief.\n\n" + TOOLS_HEADER + json.dumps([WEATHER]) in text
    assert "<|user|>\nTool result: sunny, 21 C" in text
    tok = tokenize_chat(tokenizer, example)
    assert trained_pieces(tokenizer, tok) == [CALL_TEXT + "<|im_end|>", "Sunny and 21 C.<|im_end|>"]


NATIVE = (  # a template of its own that renders tools and calls (Hermes/Qwen style)
    "{% if tools %}{{ '<|im_start|>system\n<tools>' + (tools | tojson) + '</tools><|im_end|>\n' }}{% endif %}"
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + (m['content'] or '') }}"
    "{% for c in m['tool_calls'] or [] %}{{ '<tool_call>' + (c['function'] | tojson) + '</tool_call>' }}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_a_template_with_tools_gets_them_itself(tiny_tokenizer):
    tokenizer = type(tiny_tokenizer).from_pretrained(tiny_tokenizer.name_or_path)
    tokenizer.chat_template = NATIVE
    example = messages(OPENAI_ROW)
    example.messages = example.messages[1:]  # no system turn: the template writes its own
    text = render_chat(tokenizer, example.messages, example.meta["tools"])
    assert text.startswith("<|im_start|>system\n<tools>" + json.dumps([WEATHER]) + "</tools>")
    assert TOOLS_HEADER not in text  # no fallback
    pieces = trained_pieces(tokenizer, tokenize_chat(tokenizer, example))
    assert pieces == ['<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>',
                      "Sunny and 21 C.<|im_end|>"]


def test_weight_zero_and_system_then_assistant_masks(tiny_tokenizer):
    weighted = messages({"messages": [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "first", "weight": 0},
        {"role": "user", "content": "two"}, {"role": "assistant", "content": "second"}]})
    assert trained_pieces(tiny_tokenizer, tokenize_chat(tiny_tokenizer, weighted)) == ["second<|im_end|>"]
    greeting = messages({"messages": [{"role": "system", "content": "Greet."}, {"role": "assistant", "content": "Hello"}]})
    tok = tokenize_chat(tiny_tokenizer, greeting)
    assert trained_pieces(tiny_tokenizer, tok) == ["Hello<|im_end|>"]
    assert tiny_tokenizer.decode(tok.input_ids).startswith("<|im_start|>system\nGreet.<|im_end|>\n<|im_start|>assistant\n")


# -- preview and training ------------------------------------------------------------------------


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("fmt", "row"), [("messages", OPENAI_ROW), ("sharegpt", SHAREGPT_ROW)])
def test_preview_marks_exactly_the_calls_and_answers(fmt, row, tmp_path, write_recipe, tiny_model_path):
    train = write_rows(tmp_path / "tools.jsonl", [row] * 6)
    recipe = write_recipe({"model": tiny_model_recipe_table(), "method": {"use": "full"}, "objective": {"use": "sft"},
                           "data": {"format": fmt, "train": str(train), "eval": 0.2, "max_length": 512}})
    result = CliRunner().invoke(main, ["data", "preview", str(recipe), "-n", "1"])
    assert result.exit_code == 0, result.output
    samples, _, _ = result.output.partition("--- trained tokens are shown [[...]]")
    assert re.findall(r"\[\[(.*?)\]\]", samples, flags=re.DOTALL) == [CALL_TEXT + "<|im_end|>", "Sunny and 21 C.<|im_end|>"]
    assert '"name": "get_weather", "description": "Weather of a city"' in samples  # the tool list, untrained
    assert "dropped: none" in result.output


@pytest.mark.parametrize(("fmt", "row"), [("messages", OPENAI_ROW), ("sharegpt", SHAREGPT_ROW)])
def test_a_tool_calling_file_trains(fmt, row, tmp_path, write_recipe, run_recipe):
    train = write_rows(tmp_path / f"{fmt}.jsonl", [row] * 8)
    recipe = write_recipe(tiny_recipe(train, fmt, steps=2, data={"max_length": 512}))
    metrics = run_recipe(recipe)
    assert metrics["data"]["kept"] == 8
    assert metrics["train"]["train_loss"] > 0


# -- the tool-call evaluator -------------------------------------------------------------------

LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"properties": {"word": {}}}}}


TOOL_STEPS = 60
"""Enough for the test-sized model to learn the call's shape (about 25 s on one loaded thread)."""


def lookup_rows(count: int) -> list[dict[str, Any]]:
    """A single-tool data set: the call's argument is copied from the question."""
    rows = []
    for i in range(count):
        word = "".join(chr(97 + (i * 7 + j * 5) % 26) for j in range(2))
        rows.append({"tools": [LOOKUP], "messages": [
            {"role": "user", "content": f"Look up {word}"},
            {"role": "assistant", "tool_calls": [{"id": f"c{i}", "type": "function",
                                                  "function": {"name": "lookup", "arguments": json.dumps({"word": word})}}]},
        ]})
    return rows


def test_the_tool_call_evaluator_moves_after_training(tmp_path, write_recipe, run_recipe):
    train = write_rows(tmp_path / "lookup.jsonl", lookup_rows(120))
    recipe = write_recipe(tiny_recipe(
        train, "messages", evaluators=[{"use": "tool-call", "max_new_tokens": 48}], steps=TOOL_STEPS,
        data={"max_length": 256, "eval": 0.12}, evaluation={"samples": 1, "forgetting": False}, train={"lr": 5e-3, "batch_size": 8},
    ))
    metrics = run_recipe(recipe, output=tmp_path / "run")
    before, after = metrics["before"]["tool-call"], metrics["after"]["tool-call"]
    assert before["valid_json"] == 0.0
    assert after["valid_json"] >= 0.5 and after["right_name"] >= 0.5
    sample = json.loads((tmp_path / "run" / "samples.json").read_text())[0]  # the report shows the call
    assert sample["reference"].startswith('{"name": "lookup", "arguments": {"word": "')
    assert sample["after"].startswith('{"name": "lookup"')
