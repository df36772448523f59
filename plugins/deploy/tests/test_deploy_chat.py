"""``ftx chat`` through piped stdin (history, /reset, /exit) and ``ftx generate`` on a JSONL file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from ftx.cli import main


@pytest.fixture(scope="module")
def run_model(stopping_run):
    from ftx_deploy.source import find_model, load_for_inference

    return load_for_inference(find_model(stopping_run), device="cpu")


def _greedy(run_model, messages):
    from ftx.api import generate_replies

    model, tokenizer = run_model
    return generate_replies(model, tokenizer, [messages], max_new_tokens=32)[0]


@pytest.mark.slow
def test_chat_through_piped_stdin_keeps_history_and_resets(stopping_run, run_model):
    first, second = "Reverse the letters. k q z", "Reverse the letters. a b c d"
    stdin = f"{first}\n{second}\n/reset\n{second}\n/exit\nnever read\n"
    proc = subprocess.run([sys.executable, "-m", "ftx.cli", "chat", str(stopping_run), "--max-tokens", "32"],
                          input=stdin, capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.strip() for line in proc.stdout.splitlines()]

    reply1 = _greedy(run_model, [{"role": "user", "content": first}])
    reply2 = _greedy(run_model, [{"role": "user", "content": first}, {"role": "assistant", "content": reply1},
                                 {"role": "user", "content": second}])
    reply3 = _greedy(run_model, [{"role": "user", "content": second}])
    assert lines == [reply1, reply2, "(conversation reset)", reply3]


class _RecordingEngine:
    """Stands in for the model: records the conversations it is asked to continue."""

    name = "fake"

    def __init__(self, context_length=None):
        self.context_length = context_length
        self.seen = []

    def chat_prompt_ids(self, messages):
        self.seen.append([m["content"] for m in messages])
        return list(range(sum(len(m["content"]) for m in messages)))

    def budget(self, prompt_tokens, max_tokens):
        return max_tokens or 8

    def stream(self, ids, **kwargs):
        from ftx_deploy.engine import Reply

        yield f"re{len(self.seen)}"
        yield Reply("", "stop", len(ids), 1)


def test_chat_loop_history_reset_and_exit():
    from ftx_deploy.chat import chat_loop

    engine, out = _RecordingEngine(), []
    count = chat_loop(engine, ["one\n", "two\n", "/reset\n", "  \n", "three\n", "/exit\n", "four\n"], out.append)
    assert count == 3
    assert engine.seen == [["one"], ["one", "re1", "two"], ["three"]]
    assert "".join(out) == "re1\nre2\n(conversation reset)\nre3\n"

    engine = _RecordingEngine(context_length=40)  # the oldest exchange goes when the conversation outgrows it
    chat_loop(engine, ["a" * 10 + "\n", "b" * 10 + "\n", "c" * 10 + "\n"], lambda _t: None)
    assert engine.seen[-1][0].startswith("b") and len(engine.seen[-1]) == 3


@pytest.mark.slow
def test_generate_writes_a_reply_per_prompt(stopping_run, run_model, tmp_path):
    from ftx_deploy.smoke import eval_prompts

    prompts, _, _ = eval_prompts(stopping_run, 2, lambda _m: None)
    rows = [{"prompt": prompts[0][-1]["content"], "id": 1}, {"messages": prompts[1], "id": 2}]
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["generate", str(stopping_run), "--input", str(source), "--output", str(out),
                                       "--max-tokens", "32"])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["id"] for w in written] == [1, 2] and all(w["finish_reason"] == "stop" for w in written)
    assert [w["reply"] for w in written] == [_greedy(run_model, prompts[0]), _greedy(run_model, prompts[1])]


def test_generate_names_the_bad_line(tmp_path, tiny_model_path):
    source = tmp_path / "prompts.jsonl"
    source.write_text('{"prompt": "hi"}\n{"text": "no prompt"}\n')
    result = CliRunner().invoke(main, ["generate", str(tiny_model_path), "--input", str(source),
                                       "--output", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2
    assert f"{source}, line 2: give" in result.output and not (tmp_path / "out.jsonl").exists()
