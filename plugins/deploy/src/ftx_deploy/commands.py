"""The ``export``, ``chat``, ``generate`` and ``serve`` commands; importing this module imports no torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from ftx.errors import FtxError

_target = click.argument("target", metavar="MODEL_OR_RUN", type=click.Path(path_type=Path))
_trust = click.option("--trust-remote-code", is_flag=True,
                      help="Allow the model code a run's recipe asks for (model.trust_remote_code), as ftx run does.")
_device = click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]),
                       help="Where the model runs.")


def _fail(exc: FtxError) -> None:
    click.secho("error: ", fg="red", bold=True, err=True, nl=False)
    click.echo(str(exc), err=True)
    sys.exit(exc.exit_code)


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _engine(target: Path, device: str, name: str | None = None, trust_remote_code: bool = False) -> Any:
    from .engine import Engine
    from .source import find_model, load_for_inference

    source = find_model(target)
    model, tokenizer = load_for_inference(source, device=device, echo=_echo, trust_remote_code=trust_remote_code)
    return Engine(model, tokenizer, name or source.name)


@click.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Path(path_type=Path), help="The folder to write (created).")
@click.option("--merge", "mode", flag_value="merge", help="Adapter runs: merge into the base (the default).")
@click.option("--adapter", "mode", flag_value="adapter", help="Adapter runs: export the adapter with its tokenizer.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in --to.")
@click.option("--no-smoke-test", "no_smoke", is_flag=True, help="Skip the check that generations stop at EOS.")
@click.option("--smoke-prompts", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Held-out prompts the smoke test generates on.")
@click.option("--smoke-max-tokens", type=click.IntRange(1), default=None,
              help="Length cap of the smoke test (default: twice the longest trained answer, at least 256, "
                   "within the model's context).")
@click.option("--format", "fmt", default="hf", show_default=True, type=click.Choice(["hf", "gguf"]),
              help="hf: a Hugging Face folder; gguf: one GGUF file (llama.cpp, Ollama) plus a Modelfile, read back "
                   "and checked against the merged model's greedy replies before it is kept.")
@click.option("--quant", default="f16", show_default=True, type=click.Choice(["f16", "q8_0"]),
              help="--format gguf: the weights' precision (q8_0: half the size, replies within a stated tolerance).")
@_trust
@_device
def export(run_dir: Path, to: Path, mode: str | None, overwrite: bool, no_smoke: bool, smoke_prompts: int,
           smoke_max_tokens: int | None, fmt: str, quant: str, trust_remote_code: bool, device: str) -> None:
    """Export a run's model as a standalone Hugging Face folder (or a GGUF file), smoke-tested to stop at EOS."""
    try:
        from .export import export_model

        export_model(run_dir, to, mode=mode or "auto", overwrite=overwrite, smoke_test=not no_smoke,
                     smoke_prompts=smoke_prompts, smoke_max_tokens=smoke_max_tokens, device=device, echo=_echo,
                     trust_remote_code=trust_remote_code, fmt=fmt, quant=quant)  # type: ignore[arg-type]
    except FtxError as exc:
        _fail(exc)
    click.echo(str(to))


@click.command()
@_target
@click.option("--system", help="A system message that starts the conversation.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Most tokens per reply.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=None,
              help="0 for greedy; default: the model's generation config.")
@_trust
@_device
def chat(target: Path, system: str | None, max_tokens: int | None, temperature: float | None,
         trust_remote_code: bool, device: str) -> None:
    """Chat with a model in the terminal, one message per line (/reset, /exit); stdin may be piped."""
    try:
        from .chat import run_chat

        engine = _engine(target, device, trust_remote_code=trust_remote_code)
        run_chat(engine, sys.stdin, sys.stdout, system=system, max_tokens=max_tokens, temperature=temperature)
    except FtxError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("", err=True)


@click.command()
@_target
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help='JSONL file: {"prompt": "..."} or {"messages": [...]} per line.')
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path),
              help="JSONL file to write: each row with its reply and finish_reason.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Most tokens per reply.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=None,
              help="0 for greedy; default: the model's generation config.")
@_trust
@_device
def generate(target: Path, input_path: Path, output_path: Path, max_tokens: int | None, temperature: float | None,
             trust_remote_code: bool, device: str) -> None:
    """Generate a reply to every prompt of a JSONL file."""
    try:
        from ftx.api import write_text_atomic

        from .chat import generate_file, read_prompts

        rows = read_prompts(input_path)
        engine = _engine(target, device, trust_remote_code=trust_remote_code)
        out = generate_file(engine, rows, max_tokens=max_tokens, temperature=temperature, echo=_echo)
        write_text_atomic(Path(output_path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    except FtxError as exc:
        _fail(exc)
    _echo(f"{len(out)} replies written to {output_path}")


@click.command()
@_target
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 exposes it).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--model-name", help="The model id clients send (default: the run or model folder's name).")
@click.option("--backend", default="transformers", show_default=True, type=click.Choice(["transformers", "vllm"]),
              help="vllm: only where vLLM and a CUDA GPU are present.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--api-key", envvar="FTX_API_KEY", show_envvar=True, default=None, metavar="KEY",
              help="Require 'Authorization: Bearer KEY' on every /v1 request (what OpenAI clients send as api_key).")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True,
              help="Largest request body; larger ones get a 413.")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              metavar="SECONDS", help="Longest a whole (non-streamed) reply may take; slower ones get a 504.")
@_trust
@_device
def serve(target: Path, host: str, port: int, model_name: str | None, backend: str, log_level: str,
          api_key: str | None, max_request_bytes: int, request_timeout: float, trust_remote_code: bool,
          device: str) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models)."""
    try:
        from .server import check_port, exposure_warning
        from .server import serve as run_server
        from .source import find_model

        check_port(host, port)  # before the model loads: a busy port fails at once, in one line
        warning = exposure_warning(host, api_key)
        if warning:
            _echo(warning)  # before the model loads, so it is not lost among loading messages
        if backend == "vllm":
            from .vllm_backend import VllmEngine

            source = find_model(target)
            engine: Any = VllmEngine(source.model_dir, model_name or source.name)
        else:
            engine = _engine(target, device, model_name, trust_remote_code)
        guarded = " (API key required)" if api_key else ""
        _echo(f"serving {engine.name!r} ({engine.backend}) on http://{host}:{port}/v1{guarded}")
        run_server(engine, host=host, port=port, log_level=log_level, api_key=api_key or None,
                   max_request_bytes=max_request_bytes, request_timeout=request_timeout)
    except FtxError as exc:
        _fail(exc)


COMMANDS = (export, chat, generate, serve)


def export_command() -> click.Command:
    """``ftx export`` (the factory of its :class:`~ftx_hookspecs.CommandSpec`)."""
    return export


def chat_command() -> click.Command:
    """``ftx chat``."""
    return chat


def generate_command() -> click.Command:
    """``ftx generate``."""
    return generate


def serve_command() -> click.Command:
    """``ftx serve``."""
    return serve
