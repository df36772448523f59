"""``ftx chat`` (a terminal conversation) and ``ftx generate`` (replies to a JSONL file of prompts).

The chat reads one message per line from standard input, so it works typed at a terminal and piped
(``printf 'hi\\n/exit\\n' | ftx chat run``). It keeps the conversation (dropping the oldest turns
when it outgrows the context), ``/reset`` forgets it and ``/exit`` (or end of input) leaves.
Replies stream to standard output as they are generated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from ftx.errors import DataError

from .engine import Engine, Reply, RequestError

HELP = "Type a message and press Enter. /reset forgets the conversation, /exit leaves."


def chat_loop(engine: Engine, lines: Iterable[str], write: Callable[[str], None], *, system: str | None = None,
              max_tokens: int | None = None, temperature: float | None = None, prompt: str = "") -> int:
    """Converse over ``lines``; returns the number of replies given."""
    history: list[dict[str, str]] = []
    replies = 0
    if prompt:
        write(prompt)
    for raw in lines:
        line = raw.rstrip("\r\n")
        command = line.strip()
        if command in ("/exit", "/quit"):
            break
        if command == "/reset":
            history.clear()
            write("(conversation reset)\n")
        elif command in ("/help", "/?"):
            write(HELP + "\n")
        elif command:
            history.append({"role": "user", "content": line})
            try:
                ids = _fit(engine, history, system)
                budget = engine.budget(len(ids), max_tokens)
            except RequestError as exc:
                history.pop()
                write(f"error: {exc.message}\n")
            else:
                text = _stream_reply(engine, ids, budget, temperature, write)
                history.append({"role": "assistant", "content": text})
                replies += 1
        if prompt:
            write(prompt)
    return replies


def _fit(engine: Engine, history: list[dict[str, str]], system: str | None) -> list[int]:
    """Prompt ids of the conversation, dropping the oldest exchanges until a reply fits the context."""
    while True:
        messages = ([{"role": "system", "content": system}] if system else []) + history
        ids = engine.chat_prompt_ids(messages)
        limit = engine.context_length
        if limit is None or len(ids) < limit - 16 or len(history) <= 1:
            return ids
        del history[:2]


def _stream_reply(engine: Engine, ids: list[int], budget: int, temperature: float | None,
                  write: Callable[[str], None]) -> str:
    pieces: list[str] = []
    for item in engine.stream(ids, max_tokens=budget, temperature=temperature):
        if isinstance(item, Reply):
            if item.finish_reason == "length":
                write(f" [cut at {budget} tokens]")
        else:
            pieces.append(item)
            write(item)
    write("\n")
    return "".join(pieces).strip()


def run_chat(engine: Engine, stdin: TextIO, stdout: TextIO, **options: Any) -> int:
    """The terminal chat on real streams; a prompt and help line only when a person is typing."""
    interactive = stdin.isatty()

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    if interactive:
        write(f"ftx chat: {engine.name}. {HELP}\n")
    return chat_loop(engine, stdin, write, prompt="> " if interactive else "", **options)


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file, each with ``prompt`` (text) or ``messages`` (a conversation); bad rows name their line."""
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"--input {path}: cannot read it ({exc})") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
        ok_prompt = isinstance(row, dict) and isinstance(row.get("prompt"), str)
        ok_messages = isinstance(row, dict) and isinstance(row.get("messages"), list) and row["messages"] and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in row["messages"])
        if not (ok_prompt or ok_messages):
            raise DataError(f"{path}, line {number}: give {{\"prompt\": \"...\"}} or {{\"messages\": "
                            "[{\"role\": ..., \"content\": ...}]}")
        rows.append(row)
    return rows


def generate_file(engine: Engine, rows: list[dict[str, Any]], *, max_tokens: int | None = None,
                  temperature: float | None = None, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Each row with its ``reply`` and ``finish_reason`` added (prompts use the chat template)."""
    out = []
    for number, row in enumerate(rows, 1):
        messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
        try:
            ids = engine.chat_prompt_ids(messages)
            reply = engine.generate(ids, max_tokens=engine.budget(len(ids), max_tokens), temperature=temperature)
        except RequestError as exc:
            raise DataError(f"row {number}: {exc.message}") from None
        out.append({**row, "reply": reply.text.strip(), "finish_reason": reply.finish_reason,
                    "completion_tokens": reply.completion_tokens})
        if number % 10 == 0:
            echo(f"generated {number} of {len(rows)}")
    return out
