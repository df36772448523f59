"""The optional vLLM engine for ``ftx serve --backend vllm``: used only where vLLM and a CUDA GPU are present.

ftx does not install vLLM. The engine offers the interface of :class:`ftx_deploy.engine.Engine`
(prompt ids, budget, generate, stream) on ``vllm.LLM``; a stream yields the whole reply as one
piece. Adapters must be merged first (``ftx export --merge``), since vLLM loads a full model folder.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ftx.errors import RunError

from .engine import DEFAULT_MAX_TOKENS, Engine, Reply


def vllm_unavailable() -> str | None:
    """Why the vLLM backend cannot run here, or ``None`` when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm, on a machine with a CUDA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is available (torch.cuda.is_available() is False)"
    return None


class VllmEngine(Engine):
    """An :class:`Engine` whose generation runs on vLLM."""

    backend = "vllm"

    def __init__(self, model_dir: Path, name: str, *, max_tokens_default: int = DEFAULT_MAX_TOKENS) -> None:
        why = vllm_unavailable()
        if why:
            raise RunError(f"--backend vllm: {why}; use the default --backend transformers")
        if (Path(model_dir) / "adapter_config.json").is_file():
            raise RunError(f"--backend vllm: {model_dir} is an adapter; run `ftx export --merge` and serve the export")
        from transformers import AutoConfig, AutoTokenizer
        from vllm import LLM

        self.llm = LLM(model=str(model_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

        class _ConfigOnly:
            config = AutoConfig.from_pretrained(str(model_dir))
            generation_config = None

            def eval(self) -> Any:
                return self

        super().__init__(_ConfigOnly(), tokenizer, name, max_tokens_default=max_tokens_default)
        self._lock = threading.Lock()

    def stream(self, prompt_ids: Sequence[int], *, max_tokens: int, temperature: float | None = None,
               top_p: float | None = None, stop: Sequence[str] = (), seed: int | None = None) -> Iterator[str | Reply]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_tokens, temperature=temperature or 0.0, top_p=top_p or 1.0,
                                stop=list(stop) or None, stop_token_ids=list(self.stop_ids), seed=seed)
        with self._lock:
            output = self.llm.generate([{"prompt_token_ids": list(prompt_ids)}], params, use_tqdm=False)[0]
        choice = output.outputs[0]
        if choice.text:
            yield choice.text
        reason = "length" if choice.finish_reason == "length" else "stop"
        yield Reply("", reason, len(prompt_ids), len(choice.token_ids))
