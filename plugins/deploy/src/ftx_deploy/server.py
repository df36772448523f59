"""``ftx serve``: an OpenAI-compatible HTTP server on FastAPI and uvicorn.

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (whole or streamed as
server-sent events, ending with ``data: [DONE]``), ``GET /v1/models`` and ``GET /health``.
Generation runs in worker threads (Starlette's thread pool for whole replies and for iterating a
stream), never on the event loop; the engine's lock lets one generation run at a time and the
others wait their turn. Every error is a JSON body ``{"error": {"message", "type", "param",
"code"}}`` with a 4xx status for bad input (malformed JSON, unknown model, a prompt over the
context length, invalid parameters) or 500 for a failure of ours; the server keeps serving.

With an API key (``--api-key`` or ``FTX_API_KEY``) every ``/v1`` request must send it as
``Authorization: Bearer KEY`` (what OpenAI clients send as their ``api_key``), or it gets a 401 in
OpenAI's error shape (``invalid_api_key``); ``/health`` stays open for load balancers.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .engine import Engine, Reply, RequestError


class _Request(BaseModel):
    """Parameters shared by both endpoints; unknown OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1, description="what torch.manual_seed accepts")


def unicode_text(value: Any) -> Any:
    """Refuse text JSON can carry but Unicode cannot (a lone surrogate such as ``"\\ud800"``): a 400, not a 500."""
    texts = [value] if isinstance(value, str) else [v for v in (value or []) if isinstance(v, str)]
    if isinstance(value, list):
        texts += [p.get("text") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"holds {text[exc.start]!r} at character {exc.start}, a lone surrogate: "
                             "not valid Unicode text") from None
    return value


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    _unicode = field_validator("content")(unicode_text)


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Request):
    prompt: str | list[str]

    _unicode = field_validator("prompt")(unicode_text)


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server others can reach without a key, or ``None`` (loopback, or a key is set)."""
    if host in LOOPBACK or api_key:
        return None
    return (f"warning: listening on {host} without an API key: anyone who can reach this machine can use the "
            "model; set --api-key or FTX_API_KEY")


def key_problem(header: str | None, api_key: str) -> str | None:
    """Why an ``Authorization`` header does not carry ``api_key`` (OpenAI's wording), or ``None`` when it does."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return ("You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    if not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        return "Incorrect API key provided. Use the key given to ftx serve (--api-key or FTX_API_KEY)."
    return None


MAX_REQUEST_BYTES = 1 << 20
"""Default largest request body (1 MiB): far beyond any context a served model takes, far below a memory risk."""
REQUEST_TIMEOUT = 600.0
"""Default seconds a whole (non-streamed) reply may take before the client gets a 504."""


def create_app(engine: Engine, api_key: str | None = None, *, max_request_bytes: int = MAX_REQUEST_BYTES,
               request_timeout: float = REQUEST_TIMEOUT) -> Any:
    """The FastAPI application serving ``engine`` under its name; ``api_key`` guards every ``/v1`` route, bodies over
    ``max_request_bytes`` get a 413 and replies slower than ``request_timeout`` seconds a 504."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title=f"ftx serve: {engine.name}", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.middleware("http")
    async def _limit_size(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_request_bytes):
            return JSONResponse(error_body(f"the request body is over the server's limit of {max_request_bytes} bytes "
                                           "(ftx serve --max-request-bytes)", code="request_too_large"),
                                status_code=413)
        return await call_next(request)

    if api_key:
        @app.middleware("http")
        async def _authorize(request: Request, call_next: Any) -> Any:
            if request.url.path.startswith("/v1"):
                problem = key_problem(request.headers.get("authorization"), api_key)
                if problem is not None:
                    return JSONResponse(error_body(problem, code="invalid_api_key"), status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body(f"the request body is not valid JSON: {first.get('ctx', {}).get('error', '')}"
                                           .rstrip(": "), code="invalid_json"), status_code=400)
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                            for e in errors)
        return JSONResponse(error_body(message, param=param, code="invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind, code=str(exc.status_code)), status_code=exc.status_code)

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        return JSONResponse(error_body(exc.message, kind, exc.param, exc.code), status_code=exc.status)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error"), status_code=500)

    def check_model(name: str | None) -> None:
        if name is not None and name != engine.name:
            raise RequestError(f"The model {name!r} does not exist; this server serves {engine.name!r}",
                               param="model", code="model_not_found", status=404)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": engine.name, "backend": engine.backend}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(engine, created)]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        check_model(name)
        return _model_card(engine, created)

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest) -> Any:
        check_model(request.model)
        ids = engine.chat_prompt_ids([m.model_dump() for m in request.messages])
        return await _respond(request, ids, chat=True)

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> Any:
        check_model(request.model)
        prompt = request.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise RequestError("give one prompt per request", param="prompt", code="invalid_value")
            prompt = prompt[0]
        return await _respond(request, engine.text_prompt_ids(prompt), chat=False)

    async def _respond(request: _Request, ids: list[int], *, chat: bool) -> Any:
        options = {
            "max_tokens": engine.budget(len(ids), request.max_completion_tokens or request.max_tokens),
            "temperature": request.temperature, "top_p": request.top_p, "seed": request.seed,
            "stop": [request.stop] if isinstance(request.stop, str) else list(request.stop or []),
        }
        if request.stream:
            usage = bool((request.stream_options or {}).get("include_usage"))
            return StreamingResponse(_sse(engine, ids, options, chat, usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            reply = await asyncio.wait_for(run_in_threadpool(lambda: engine.generate(ids, **options)), request_timeout)
        except asyncio.TimeoutError:
            return JSONResponse(error_body(f"the reply took longer than {request_timeout:g} s (ftx serve "
                                           "--request-timeout); ask for fewer max_tokens", "server_error",
                                           code="timeout"), status_code=504)
        return _whole(engine.name, reply, chat)

    return app


def _model_card(engine: Engine, created: int) -> dict[str, Any]:
    card: dict[str, Any] = {"id": engine.name, "object": "model", "created": created, "owned_by": "ftx"}
    if engine.context_length:
        card["max_model_len"] = engine.context_length
    return card


def _usage(reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def _whole(model: str, reply: Reply, chat: bool) -> dict[str, Any]:
    """A complete (non-streamed) response body."""
    if chat:
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": reply.text},
                                  "finish_reason": reply.finish_reason, "logprobs": None}
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [choice], "usage": _usage(reply)}
    choice = {"index": 0, "text": reply.text, "finish_reason": reply.finish_reason, "logprobs": None}
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": [choice], "usage": _usage(reply)}


def _sse(engine: Engine, ids: list[int], options: dict[str, Any], chat: bool, usage: bool) -> Iterator[str]:
    """Server-sent events of a streamed response (a plain iterator: Starlette runs it in a thread)."""
    rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choice: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"id": rid, "object": kind, "created": created, "model": engine.name,
                                "choices": [choice] if choice else []}
        if extra:
            body.update(extra)
        return f"data: {json.dumps(body)}\n\n"

    def piece(text: str, finish: str | None = None) -> dict[str, Any]:
        if chat:
            return {"index": 0, "delta": {"content": text} if text or finish is None else {},
                    "finish_reason": finish, "logprobs": None}
        return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}

    if chat:
        yield event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None})
    try:
        for item in engine.stream(ids, **options):
            if isinstance(item, Reply):
                yield event(piece("", item.finish_reason))
                if usage:
                    yield event(None, {"usage": _usage(item)})
            else:
                yield event(piece(item))
    except Exception as exc:  # noqa: BLE001 - headers are sent; report the failure in the stream
        yield f"data: {json.dumps(error_body(f'generation failed: {type(exc).__name__}: {exc}', 'server_error'))}\n\n"
    yield "data: [DONE]\n\n"


def check_port(host: str, port: int) -> None:
    """Fail in one line, before the model loads, when ``host:port`` cannot be listened on (in use, not ours)."""
    from ftx.errors import RecipeError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
            raise RecipeError(f"port {port} on {host} {why}: stop what uses it, or choose another with --port") from None


def serve(engine: Engine, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          api_key: str | None = None, *, max_request_bytes: int = MAX_REQUEST_BYTES,
          request_timeout: float = REQUEST_TIMEOUT) -> None:
    """Run the server until interrupted."""
    import uvicorn
    from ftx.errors import RunError

    app = create_app(engine, api_key, max_request_bytes=max_request_bytes, request_timeout=request_timeout)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start: 3 is ftx's gate code, so say what happened
        if exc.code in (0, None):
            raise
        raise RunError(f"the server on {host}:{port} could not start (uvicorn exit {exc.code}); "
                       "see the lines above") from None
