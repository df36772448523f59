"""Load a trained model back, for ``ftx eval`` and for deploy plugins: the method that saved it reloads it.

A model folder holds either a full Hugging Face model (it has ``config.json``; loaded as it is) or
what a method saved (an adapter, ...). For the latter the base is loaded as the run trained it (with
the method's ``load_kwargs``: 4 bits for QLoRA) and the method's optional ``load_trained`` puts the
saved weights back on it; its optional ``merge`` folds them into a plain model for export. Which
method saved a run's model is the ``[method] use`` of the run's ``recipe.lock.toml``. For a model
folder found without its run, installed methods are asked through their optional ``trained_base``
whether they saved it, and on which base. The core itself never imports an adapter library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunError
from .layout import LOCK as MARKER
from .layout import MODEL as MODEL_DIR

Echo = Callable[[str], None]

FULL_MODEL_FILE = "config.json"
"""A model folder holding this file is a full Hugging Face model; any other holds what a method saved."""


def _silent(_message: str) -> None:
    pass


@dataclass(frozen=True)
class TrainedSource:
    """Where a trained model lives: its model folder and, when it came from one, its run folder."""

    model_dir: Path
    run_dir: Path | None
    """The run folder (its ``recipe.lock.toml`` names the data, base model and method), or ``None``."""

    @property
    def is_full(self) -> bool:
        """True for a full Hugging Face model; False for what a method saved (an adapter)."""
        return (self.model_dir / FULL_MODEL_FILE).is_file()

    @property
    def name(self) -> str:
        """A model name for servers and messages: the run folder's name, else the model folder's."""
        return (self.run_dir or self.model_dir).name


@dataclass
class TrainedModel:
    """A trained model ready for inference, with what reloaded it (needed again to merge it)."""

    model: Any
    tokenizer: Any
    source: TrainedSource
    method: Any = None
    """The method object that put the saved weights back on the base; ``None`` for a full model."""
    method_name: str | None = None
    """That method's registered name (``lora``, ...)."""
    context: Any = None
    """The run context it was loaded under (a :class:`ftx_hookspecs.RunContext`), ``None`` without a run."""
    base: str | None = None
    """The base model's folder or hub id, when a method's weights were put on one."""


def find_trained(path: Path | str) -> TrainedSource:
    """Resolve a run folder or model folder to its model, or fail saying what a valid one holds."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise RunError(f"{path} does not exist: give a run folder (with {MARKER}) or a model folder")
    if (path / MARKER).is_file():
        model_dir = path / MODEL_DIR
        if not model_dir.is_dir():
            raise RunError(f"run folder {path} has no {MODEL_DIR}/ folder: the run did not finish saving its model")
        return TrainedSource(model_dir, path)
    if (path / FULL_MODEL_FILE).is_file() or any(path.glob("*.safetensors")) or any(path.glob("*_config.json")):
        return TrainedSource(path, None)
    raise RunError(f"{path} is neither a run folder (no {MARKER}) nor a model folder "
                   f"(no {FULL_MODEL_FILE}, no saved weights)")


def read_run_recipe(run_dir: Path | str, overrides: Sequence[str] = (), registry: Any = None) -> Any:
    """The validated recipe a run folder's ``recipe.lock.toml`` records (``overrides`` applied)."""
    from .recipe.loader import apply_overrides, build_recipe
    from .recipe.toml_io import read_toml

    if registry is None:
        from .plugins import make_plugin_manager

        registry = make_plugin_manager().registry
    lock = Path(run_dir) / MARKER
    data = read_toml(lock)
    data.pop("ftx", None)
    return build_recipe(apply_overrides(data, overrides) if overrides else data, registry, path=lock)


def run_examples(run_dir: Path | str) -> Any:
    """A run's examples split exactly as it trained (``.train`` and ``.eval``), rebuilt from its lock."""
    from .data.prepare import prepare_examples

    recipe = read_run_recipe(run_dir)
    return prepare_examples(recipe.data, recipe.data_format.build(), recipe.train.seed)


def claiming_method(model_dir: Path, registry: Any) -> tuple[str, Any, Mapping[str, Any]] | None:
    """``(name, method, base table)`` of the first installed method (by name) whose optional
    ``trained_base`` says it saved ``model_dir``; ``None`` when none does."""
    for found in sorted(registry.all("method"), key=lambda r: r.spec.name):
        try:
            method = found.spec.build(found.spec.options())
        except Exception:  # noqa: BLE001 - a method that needs options cannot be asked; skip it
            continue
        ask = getattr(method, "trained_base", None)
        if ask is None:
            continue
        table = ask(Path(model_dir))
        if table:
            return found.spec.name, method, table
    return None


def _reloader(method: Any, name: str, model_dir: Path, registry: Any, echo: Echo) -> tuple[str, Any]:
    """The method (name, object) that puts ``model_dir`` back on its base: the run's own, else an installed
    one that recognises the folder."""
    if getattr(method, "load_trained", None) is not None:
        return name, method
    claim = claiming_method(model_dir, registry)
    if claim is None:
        raise RunError(
            f"{model_dir} holds no full model (no {FULL_MODEL_FILE}) and method {name!r} that saved it cannot "
            "load it back (it has no load_trained, added in ftx-hookspecs 1.2), nor does any installed method "
            "recognise it; upgrade the method's plugin, or train with [output] save = \"merged\"")
    echo(f"method {name!r} has no load_trained; loading {model_dir.name}/ with method {claim[0]!r}, which recognises it")
    return claim[0], claim[1]


def load_saved_model(recipe: Any, model_dir: Path, run: Any) -> tuple[Any, str | None, Any]:
    """``(model, method name, method)``: the model saved in ``model_dir`` under ``recipe``; sets ``run.tokenizer``.

    A full model loads with the objective's head (method ``None``); otherwise the base loads as the
    run trained it and the method that saved the folder puts its weights back.
    """
    from .models.loading import class_labels, load_model, load_tokenizer, resolve_model_path

    head = getattr(recipe.objective.spec, "model_head", "causal-lm")
    labels = class_labels(recipe, getattr(run, "data", None)) if head == "sequence-classification" else None
    run.tokenizer = load_tokenizer(recipe.model.model_copy(update={"tokenizer": None}), str(model_dir))
    if (model_dir / FULL_MODEL_FILE).is_file():
        model = load_model(recipe.model, str(model_dir), head=head, device=run.device, tokenizer=run.tokenizer,
                           extra={}, labels=labels)
        return model, None, None
    method = recipe.method.build()
    name, loader = _reloader(method, recipe.method.name, model_dir, run.manager.registry, run.echo)
    base_path = resolve_model_path(recipe.model, echo=run.echo)
    base = load_model(recipe.model, base_path, head=head, device=run.device, tokenizer=run.tokenizer,
                      extra=method.load_kwargs(run), labels=labels)
    try:
        return loader.load_trained(base, model_dir, run), name, loader
    except Exception as exc:
        from .models.loading import damaged_weights

        damaged = damaged_weights(str(model_dir))
        if damaged is not None:
            raise RunError(f"this model file is damaged: {damaged}; copy or save the model again") from exc
        raise


def _plain_tokenizer(folder: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot load the tokenizer saved in {folder}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _plain_causal_lm(folder: str | Path, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        model: Any = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto")
    except Exception as exc:
        from .models.loading import damaged_weights

        damaged = damaged_weights(str(folder))
        if damaged is not None:
            raise RunError(f"this model file is damaged: {damaged}; copy or save the model again") from exc
        if isinstance(exc, (OSError, ValueError)):
            raise RunError(f"cannot load the model in {folder}: {exc}") from exc
        raise
    return model.to(device).eval()


def load_trained(source: TrainedSource | Path | str, *, device: str = "auto", echo: Echo | None = None,
                 trust_remote_code: bool = False) -> TrainedModel:
    """A trained model and its tokenizer, ready to generate (eval mode, on ``device``; ``auto``: the one device rule).

    A full model loads as it is. A run's adapter loads on its base exactly as it trained (a QLoRA base
    in 4 bits again). An adapter folder without its run loads on the base the method that saved it
    names, unquantised. A run whose recipe sets ``model.trust_remote_code`` needs ``trust_remote_code`` too.
    """
    from .device import resolve_device
    from .training import quiet_libraries

    quiet_libraries()
    echo = echo or _silent
    source = source if isinstance(source, TrainedSource) else find_trained(source)
    device = resolve_device(device)
    if source.is_full:
        return TrainedModel(_plain_causal_lm(source.model_dir, device), _plain_tokenizer(source.model_dir), source)
    from .plugins import make_plugin_manager

    manager = make_plugin_manager()
    if source.run_dir is not None:
        from .context import Run
        from .models.loading import resolve_model_path

        recipe = read_run_recipe(source.run_dir, registry=manager.registry)
        from .models.loading import check_remote_code

        check_remote_code(recipe.model, trust_remote_code)  # the run's base may be the repository's own code
        run = Run(recipe, source.run_dir, manager, echo_fn=echo)
        run.device = device
        model, name, method = load_saved_model(recipe, source.model_dir, run)
        base = resolve_model_path(recipe.model, echo=echo) if method is not None else None
        return TrainedModel(model.eval(), run.tokenizer, source, method, name, run, base)
    claim = claiming_method(source.model_dir, manager.registry)
    if claim is None:
        raise RunError(f"{source.model_dir} holds no full model (no {FULL_MODEL_FILE}) and no installed method "
                       "recognises what is in it; give the run folder it came from instead")
    name, method, table = claim
    from .models.loading import resolve_model_path
    from .recipe.schema import ModelSection

    section = ModelSection(**{k: table[k] for k in ("name", "config", "pretrain_steps") if table.get(k) is not None})
    base = resolve_model_path(section, echo=echo)
    has_tokenizer = any((source.model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = _plain_tokenizer(source.model_dir if has_tokenizer else base)  # else the base's own
    model = _plain_causal_lm(base, device)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model = method.load_trained(model, source.model_dir, None)
    return TrainedModel(model.eval(), tokenizer, source, method, name, None, base)


def merge_trained(trained: TrainedModel) -> Any:
    """The trained model as a plain transformers model: a full one as it is, else the method's ``merge``."""
    if trained.method is None:
        return trained.model
    merge = getattr(trained.method, "merge", None)
    if merge is None:
        raise RunError(f"method {trained.method_name!r} cannot merge what it saved in "
                       f"{trained.source.model_dir} (it has no merge, added in ftx-hookspecs 1.2); "
                       "export the adapter as it is instead")
    return merge(trained.model, trained.context)
