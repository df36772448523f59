"""Find the model of a run folder or model folder, and load it for inference.

``MODEL_OR_RUN`` is a run folder (it holds ``recipe.lock.toml`` and ``model/``), or a model folder:
a full Hugging Face model (``config.json``) or a peft adapter (``adapter_config.json``). An adapter's
base is its ``base_model_name_or_path`` when that folder still exists, else the run's recipe (or
the ``ftx_base.json`` the LoRA plugin writes), so built-in bases are rebuilt from their config.
A run's adapter is loaded exactly as it trained (a QLoRA base in 4 bits) through :mod:`ftx.evaluate_cmd`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..rundir import MARKER

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ModelSource:
    """Where a model to deploy lives."""

    model_dir: Path
    run_dir: Path | None
    """The run folder, when the model came from one (its lock gives data and base model)."""

    @property
    def is_adapter(self) -> bool:
        return (self.model_dir / "adapter_config.json").is_file()

    @property
    def name(self) -> str:
        """A model name for the server and messages: the run folder's name, else the model folder's."""
        return (self.run_dir or self.model_dir).name


def find_model(path: Path) -> ModelSource:
    """Resolve ``MODEL_OR_RUN`` to its model folder, or fail saying what a valid one holds."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise RunError(f"{path} does not exist: give a run folder (with {MARKER}) or a model folder")
    if (path / MARKER).is_file():
        model_dir = path / "model"
        if not model_dir.is_dir():
            raise RunError(f"run folder {path} has no model/ folder: the run did not finish saving its model")
        return ModelSource(model_dir, path)
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return ModelSource(path, None)
    raise RunError(f"{path} is neither a run folder (no {MARKER}) nor a model folder "
                   "(no config.json or adapter_config.json)")


def lock_recipe(run_dir: Path, registry: Any) -> Any:
    """The validated recipe stored in a run folder's ``recipe.lock.toml``."""
    from ..recipe.loader import build_recipe
    from ..recipe.toml_io import read_toml

    lock = run_dir / MARKER
    data = read_toml(lock)
    data.pop("ftx", None)
    return build_recipe(data, registry, path=lock)


def quiet() -> None:
    """No library warnings or progress bars in deploy commands' output (it may be a chat or a JSONL file)."""
    from transformers.utils import logging as hf_logging

    from ..training import quiet_libraries

    quiet_libraries()
    hf_logging.disable_progress_bar()


def pick_device(device: str = "auto") -> str:
    """``auto``: CUDA when present, else CPU (MPS is opt-in for inference)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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


def base_model_of(source: ModelSource, registry: Any = None, echo: Echo | None = None) -> str:
    """The folder (or hub id) of an adapter's base model."""
    from ..models.loading import resolve_model_path
    from ..recipe.schema import ModelSection

    config = json.loads((source.model_dir / "adapter_config.json").read_text(encoding="utf-8"))
    named = config.get("base_model_name_or_path")
    if named and Path(named).is_dir():
        return str(named)
    if source.run_dir is not None and registry is not None:
        return resolve_model_path(lock_recipe(source.run_dir, registry).model, echo=echo)
    info_file = source.model_dir / "ftx_base.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text(encoding="utf-8"))
        if info.get("model"):
            section = ModelSection(name=info["model"], config=info.get("config") or {},
                                   pretrain_steps=info.get("pretrain_steps") or 0)
            return resolve_model_path(section, echo=echo)
    if named:
        return str(named)
    raise RunError(f"adapter {source.model_dir} names no base model (adapter_config.json base_model_name_or_path)")


def load_for_inference(source: ModelSource, *, device: str = "auto", echo: Echo | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready to generate: a run's adapter on its base as trained, else the saved model."""
    quiet()
    device = pick_device(device)
    if not source.is_adapter:
        return load_causal_lm(source.model_dir, device), load_tokenizer(source.model_dir)
    if source.run_dir is not None:
        model, tokenizer = load_run_adapter(source, device, echo)
        return model.eval(), tokenizer
    from peft import PeftModel

    tokenizer = load_tokenizer(source.model_dir)
    base = load_causal_lm(base_model_of(source, echo=echo), device)
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(base, str(source.model_dir)).eval(), tokenizer


def load_run_adapter(source: ModelSource, device: str, echo: Echo | None = None) -> tuple[Any, Any]:
    """A run's adapter on its base exactly as the run trained it (a QLoRA base quantised again)."""
    from ..context import Run
    from ..evaluate_cmd import load_trained_model
    from ..plugins import make_plugin_manager

    assert source.run_dir is not None
    manager = make_plugin_manager()
    recipe = lock_recipe(source.run_dir, manager.registry)
    run = Run(recipe, source.run_dir, manager, echo_fn=echo or (lambda _m: None))
    run.device = device
    model = load_trained_model(recipe, source.model_dir, run)
    return model, run.tokenizer
