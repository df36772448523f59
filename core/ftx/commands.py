"""What plugin commands (ftx-sweep, ftx-plan, ftx-runs, ...) get from the core, exposed through :mod:`ftx.api`.

Loading a recipe with ``--set`` overrides (one stage of a pipeline with ``--stage``), running one
in this process, the plugin manager, a model's ``config.json`` and the run folder's file names.
Every helper imports its core module when called, so importing this one never imports torch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import RecipeError


def plugin_manager(extra_plugins: Iterable[Any] = ()) -> Any:
    """A fresh plugin manager over the installed plugins (plus ``extra_plugins``: modules or hook objects)."""
    from .plugins import make_plugin_manager

    return make_plugin_manager(extra_plugins=extra_plugins)


def load_recipe(path: Path | str, overrides: Iterable[str] = (), *, manager: Any = None) -> Any:
    """Read, override and validate a recipe: a run's recipe, or a pipeline (it has ``.stages``)."""
    return (manager or plugin_manager()).load_recipe(Path(path), tuple(overrides))


def is_pipeline(recipe: Any) -> bool:
    """Whether a loaded recipe is a ``[[stages]]`` pipeline rather than one run."""
    return getattr(recipe, "stages", None) is not None


def load_stage(path: Path | str, overrides: Iterable[str] = (), stage: str | None = None, *,
               manager: Any = None) -> Any:
    """The recipe of one run: the file's own, or stage ``stage`` of a pipeline (``--stage NAME``).

    A stage whose model is an earlier stage's output (``stage:NAME``) gets that stage's model name
    and config, since it has that stage's architecture.
    """
    recipe = load_recipe(path, overrides, manager=manager)
    if not is_pipeline(recipe):
        if stage:
            raise RecipeError(f"--stage {stage}: {path} has no [[stages]]")
        return recipe
    stages = recipe.stages
    names = [s.name for s in stages]
    if stage not in names:
        raise RecipeError(f"{path} is a pipeline of stages {', '.join(names)}: choose one with --stage NAME")
    chosen = stages[names.index(stage)].recipe
    while chosen.model.name.startswith("stage:"):
        earlier = stages[names.index(chosen.model.name.removeprefix("stage:"))].recipe
        chosen = dataclasses.replace(chosen, model=chosen.model.model_copy(update={"name": earlier.model.name,
                                                                                   "config": earlier.model.config}))
    return chosen


def run_recipe(recipe: Any, manager: Any, *, output: Path | None = None, overwrite: bool = False,
               resume: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate ``recipe`` in this process as ``ftx run`` does; returns ``metrics.json``'s content."""
    from .runner import run_recipe as run

    return run(recipe, manager, output=output, overwrite=overwrite, resume=resume, echo=echo)


def evaluator_names(recipe: Any) -> list[str]:
    """The names a recipe's evaluators report under in ``metrics.json`` (``loss``, ``loss-2``, ...)."""
    from .evaluation import unique_names

    return unique_names(e.name for e in recipe.evaluators)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Recipe data with ``KEY=VALUE`` overrides applied, as ``--set`` does."""
    from .recipe.loader import apply_overrides as apply

    return apply(data, overrides)


def read_toml(path: Path | str) -> dict[str, Any]:
    """A TOML file as data; a syntax error is a :class:`~ftx.errors.RecipeError` naming the line."""
    from .recipe.toml_io import read_toml as read

    return read(Path(path))


def toml_loads(text: str) -> dict[str, Any]:
    """TOML text as data; raises ``ValueError`` (``tomllib.TOMLDecodeError``) on bad syntax."""
    from .recipe.toml_io import loads

    return loads(text)


def model_config(section: Any, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """The ``config.json`` of a recipe's ``[model]`` table (``recipe.model``), without loading weights.

    A built-in model's config is made from its table (``config`` overrides included); a local folder's
    is read; a hub id's comes from transformers' ``AutoConfig`` (the hub, or its cache offline).
    ``model.trust_remote_code`` needs ``trust_remote_code`` (``--trust-remote-code``) here, as for ``ftx run``.
    """
    from .models.loading import check_remote_code

    check_remote_code(section, trust_remote_code)  # as `ftx run` would: the config may be the repository's code
    name = str(section.name)
    if name.startswith("builtin:"):
        from .models.tiny import VOCAB_SIZE
        from .models.tiny import model_config as builtin_config

        return {**builtin_config(name.removeprefix("builtin:"), section.config or {}),
                "vocab_size": VOCAB_SIZE, "model_type": "llama", "hidden_act": "silu"}
    from .models.gguf import gguf_folder, is_gguf

    if is_gguf(name):  # a GGUF file's config is that of its converted folder (converted once, then cached)
        name = str(gguf_folder(name))
    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, revision=section.revision, trust_remote_code=section.trust_remote_code)
    except (OSError, ValueError) as exc:  # offline, unknown id, gated repository, no config.json
        from .errors import RunError

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunError(f"cannot read the config of model {name!r} (model.name): {first}") from None
    return config.to_dict()
