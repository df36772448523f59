"""ftx plugin: deploy a trained model: export it, chat with it, generate from a file, serve it over HTTP.

Registers the ``export``, ``chat``, ``generate`` and ``serve`` commands through ``ftx_register_commands``,
the path any plugin's commands take; each command's module is imported only when it runs, so
``ftx --help`` imports neither torch nor FastAPI.

* :mod:`.source` finds the model in a run folder or model folder and loads it for inference (through
  ``ftx.api``: the method that saved an adapter puts it back on its base);
* :mod:`.stops` works out the end-of-turn token the chat template ends assistant turns with;
* :mod:`.smoke` checks that greedy generations stop at an EOS id before a length cap;
* :mod:`.export` writes a standalone Hugging Face folder (merged or adapter), smoke-tested;
* :mod:`.engine` generates (whole or streamed) behind a lock, for chat, files and the server;
* :mod:`.chat` is the terminal chat and the JSONL batch generation;
* :mod:`.server` is the OpenAI-compatible HTTP server (FastAPI + uvicorn), :mod:`.vllm_backend` its
  optional vLLM engine.
"""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import CommandSpec, hookimpl

COMMANDS: dict[str, str] = {
    "export": "Export a run's model as a standalone Hugging Face folder, smoke-tested.",
    "chat": "Chat with a model in the terminal, one message per line.",
    "generate": "Generate a reply to every prompt of a JSONL file.",
    "serve": "Serve a model over an OpenAI-compatible HTTP API.",
}
"""Each command's name and the one line ``ftx --help`` shows for it."""


@hookimpl
def ftx_register_commands(register: Callable[[CommandSpec], None]) -> None:
    for name, summary in COMMANDS.items():
        register(CommandSpec(name=name, summary=summary, factory=f"ftx_deploy.commands:{name}_command"))
