"""Generation for chat, files and the server: one request at a time behind a lock, streamed or whole.

``Engine.stream`` runs ``model.generate`` in a worker thread and yields text as a
``TextIteratorStreamer`` decodes it; ``Engine.generate`` joins the pieces. The worker holds a lock
while it generates, so concurrent requests queue (one model, one generation at a time) while the
callers' threads, never the server's event loop, wait; a caller that stops reading (a client gone
mid-stream) cancels its generation at the next token and cannot keep the lock. Stop strings are matched on the decoded text with a small hold-back
buffer, so a stop string split across tokens is still cut and never streamed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .stops import generation_stop_ids

DEFAULT_MAX_TOKENS = 256


class RequestError(Exception):
    """A request the model cannot serve as asked; becomes an OpenAI-style 4xx error."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


@dataclass
class Reply:
    """A finished generation: text, why it ended (``stop`` or ``length``), and token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def context_length(model: Any, tokenizer: Any) -> int | None:
    """The most tokens the model attends to (prompt plus reply), when the config or tokenizer says."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def message_text(content: Any) -> str:
    """An OpenAI message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
        else:
            raise RequestError("only text content parts are supported", param="messages", code="unsupported_content")
    return "".join(parts)


class StopMatcher:
    """Cuts streamed text at the first stop string, holding back just enough to see one split across pieces."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        """Text safe to emit now; sets ``hit`` when a stop string appeared (the rest is dropped)."""
        self.pending += piece
        if self.stops:
            found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
            if found:
                self.hit = True
                out, self.pending = self.pending[: min(found)], ""
                return out
        if len(self.pending) <= self.hold:
            return ""
        cut = len(self.pending) - self.hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class Engine:
    """A loaded model and tokenizer that answer chats and completions, one generation at a time."""

    backend = "transformers"

    def __init__(self, model: Any, tokenizer: Any, name: str, *, max_tokens_default: int = DEFAULT_MAX_TOKENS) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.stop_ids = generation_stop_ids(model, tokenizer)
        self.context_length = context_length(model, tokenizer)
        self.max_tokens_default = max_tokens_default
        self._lock = threading.Lock()
        if getattr(model.config, "use_cache", None) is False:
            model.config.use_cache = True  # training switches the KV cache off; generation wants it

    # prompts -------------------------------------------------------------------------------------
    def chat_prompt_ids(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Token ids of a conversation rendered with the saved chat template, ready for the reply."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise RequestError(f"model {self.name!r} has no chat template; use /v1/completions",
                               param="messages", code="no_chat_template")
        convo = [{"role": "system" if m.get("role") == "developer" else m.get("role"),
                  "content": message_text(m.get("content"))} for m in messages]
        try:
            text = self.tokenizer.apply_chat_template(convo, tokenize=False, add_generation_prompt=True)
        except Exception as exc:
            raise RequestError(f"the chat template cannot render these messages: {exc}", param="messages") from exc
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def text_prompt_ids(self, text: str) -> list[int]:
        """Token ids of a raw completion prompt (with the tokenizer's own special tokens, e.g. BOS)."""
        return list(self.tokenizer(text)["input_ids"])

    def budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """The reply's token budget, or a ``context_length_exceeded`` error like OpenAI's."""
        limit = self.context_length
        if limit is not None and prompt_tokens >= limit:
            raise RequestError(
                f"This model's maximum context length is {limit} tokens; the prompt has {prompt_tokens} tokens. "
                "Shorten the prompt.", param="messages", code="context_length_exceeded")
        if max_tokens is None:
            room = self.max_tokens_default if limit is None else limit - prompt_tokens
            return max(1, min(self.max_tokens_default, room))
        if limit is not None and prompt_tokens + max_tokens > limit:
            raise RequestError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} for the "
                "completion). Reduce the prompt or max_tokens.", param="max_tokens", code="context_length_exceeded")
        return max_tokens

    # generation ----------------------------------------------------------------------------------
    def generate(self, prompt_ids: Sequence[int], *, max_tokens: int, temperature: float | None = None,
                 top_p: float | None = None, stop: Sequence[str] = (), seed: int | None = None) -> Reply:
        """The whole reply (see :meth:`stream`)."""
        pieces: list[str] = []
        for item in self.stream(prompt_ids, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                stop=stop, seed=seed):
            if isinstance(item, Reply):
                item.text = "".join(pieces)
                return item
            pieces.append(item)
        raise RuntimeError("generation ended without a result")  # pragma: no cover

    def stream(self, prompt_ids: Sequence[int], *, max_tokens: int, temperature: float | None = None,
               top_p: float | None = None, stop: Sequence[str] = (), seed: int | None = None) -> Iterator[str | Reply]:
        """Yield text pieces as they are decoded, then one :class:`Reply` (its text empty) with counts and reason."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancel = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        device = next(self.model.parameters()).device
        inputs = torch.tensor([list(prompt_ids)], device=device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs: dict[str, Any] = {
            "input_ids": inputs, "attention_mask": torch.ones_like(inputs), "max_new_tokens": max_tokens,
            "eos_token_id": self.stop_ids, "pad_token_id": self.tokenizer.pad_token_id, "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Cancel()]), "use_cache": True,
            **self._sampling(temperature, top_p),
        }
        result: dict[str, Any] = {}
        # The worker, not this generator, holds the lock: a consumer that walks away mid-stream (a client
        # that disconnects) cannot keep it; the worker stops at the next token once ``cancel`` is set.
        worker = threading.Thread(target=self._run, args=(kwargs, streamer, result, cancel, seed), daemon=True)
        worker.start()
        matcher = StopMatcher(stop)
        try:
            for piece in streamer:
                text = matcher.feed(piece)
                if text:
                    yield text
                if matcher.hit:
                    break
            else:
                text = matcher.flush()
                if text:
                    yield text
        finally:
            cancel.set()
            worker.join()
        if "error" in result:
            raise result["error"]
        new = result["output"][0, len(prompt_ids):].tolist()
        if matcher.hit or (new and new[-1] in self.stop_ids):
            reason = "stop"
        else:
            reason = "length"
        yield Reply("", reason, len(prompt_ids), len(new))

    def _sampling(self, temperature: float | None, top_p: float | None) -> dict[str, Any]:
        """Greedy at temperature 0; unset values follow the model's generation config."""
        if temperature is None:
            config = getattr(self.model, "generation_config", None)
            if not getattr(config, "do_sample", False):
                return {"do_sample": False}
            out: dict[str, Any] = {"do_sample": True}
        elif temperature == 0:
            return {"do_sample": False}
        else:
            out = {"do_sample": True, "temperature": temperature}
        if top_p is not None:
            out["top_p"] = top_p
        return out

    def _run(self, kwargs: dict[str, Any], streamer: Any, result: dict[str, Any], cancel: threading.Event,
             seed: int | None) -> None:
        """Generate under the lock (requests queue here); a request cancelled while waiting never starts."""
        import torch

        try:
            with self._lock:
                if cancel.is_set():
                    result["output"] = kwargs["input_ids"]
                    streamer.end()
                    return
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.no_grad():
                    result["output"] = self.model.generate(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            result["error"] = exc
            streamer.end()
