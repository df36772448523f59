"""Find the model of a run folder or model folder, and load it for inference.

``MODEL_OR_RUN`` is a run folder (it holds ``recipe.lock.toml`` and ``model/``) or a model folder:
a full Hugging Face model (``config.json``) or what a method saved (an adapter). Loading goes through
``ftx.api.load_trained``: a run's adapter is put back on its base exactly as it trained (a QLoRA base
in 4 bits) by the method that saved it; an adapter folder without its run goes on the base the
method recorded. This plugin imports no adapter library.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftx.api import TrainedSource, find_trained, load_trained, quiet_libraries, resolve_device
from ftx.errors import RunError

Echo = Callable[[str], None]

ModelSource = TrainedSource
"""Where a model to deploy lives: ``model_dir``, ``run_dir`` (or ``None``), ``is_full`` and ``name``."""


def find_model(path: Path) -> ModelSource:
    """Resolve ``MODEL_OR_RUN`` to its model folder, or fail saying what a valid one holds."""
    return find_trained(path)


def quiet() -> None:
    """No library warnings or progress bars in deploy commands' output (it may be a chat or a JSONL file)."""
    from transformers.utils import logging as hf_logging

    quiet_libraries()
    hf_logging.disable_progress_bar()


def pick_device(device: str = "auto") -> str:
    """``auto``: ftx's one device rule (CUDA, then MPS, then the CPU); any other name as given."""
    return resolve_device(device)


def load_tokenizer(model_dir: Path) -> Any:
    """The saved tokenizer, with a pad token (the EOS where it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot load the tokenizer saved in {model_dir}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_causal_lm(folder: str | Path, device: str, dtype: Any = "auto") -> Any:
    """A plain transformers causal LM from a folder or hub id, in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot load the model in {folder}: {exc}") from exc
    return model.to(device).eval()


def load_for_inference(source: ModelSource, *, device: str = "auto", echo: Echo | None = None,
                       trust_remote_code: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready to generate: a run's adapter on its base as trained, else the saved model."""
    quiet()
    trained = load_trained(source, device=device, echo=echo, trust_remote_code=trust_remote_code)
    return trained.model.eval(), trained.tokenizer
