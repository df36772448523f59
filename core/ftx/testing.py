"""Test helpers for ftx and plugin authors, shipped as a pytest plugin (entry point ``pytest11``).

Fixtures:

* ``ftx_home``: a session-wide cache folder (``$FTX_HOME``), so built-in models are built once;
* ``plugin_manager``: a fresh plugin manager per test (entry points loaded);
* ``tiny_model_path``: the cached folder of ``builtin:tiny-llama`` (model + tokenizer);
* ``tiny_model_factory``: a fresh tiny model per call, loaded from that folder;
* ``tiny_tokenizer``: its tokenizer;
* ``write_recipe``: writes a recipe TOML into a temporary folder and returns its path;
* ``run_recipe``: runs a recipe in-process and returns its ``metrics.json`` content.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

TINY_TEST_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
"""An even smaller built-in model for tests that only need something that runs."""


@pytest.fixture(scope="session")
def ftx_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder shared by the whole session; respects an ``FTX_HOME`` already set."""
    preset = os.environ.get("FTX_HOME")
    home = Path(preset) if preset else tmp_path_factory.mktemp("ftx-home")
    old = os.environ.get("FTX_HOME")
    os.environ["FTX_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield home
    if old is None:
        os.environ.pop("FTX_HOME", None)
    else:
        os.environ["FTX_HOME"] = old


@pytest.fixture
def plugin_manager(ftx_home: Path) -> Any:
    """A fresh plugin manager, entry points included."""
    from ftx.plugins import make_plugin_manager

    return make_plugin_manager()


@pytest.fixture(scope="session")
def tiny_model_path(ftx_home: Path) -> Path:
    """The cached ``builtin:tiny-llama`` folder (test-sized config), built once per session."""
    from ftx.models.tiny import ensure_builtin

    return ensure_builtin("builtin:tiny-llama", TINY_TEST_CONFIG)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path: Path) -> Any:
    """The tiny model's tokenizer (chatml template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture
def tiny_model_factory(tiny_model_path: Path) -> Callable[[], Any]:
    """Call to get a fresh tiny causal LM."""
    from transformers import AutoModelForCausalLM

    def make() -> Any:
        return AutoModelForCausalLM.from_pretrained(tiny_model_path)

    return make


def recipe_text(tables: Mapping[str, Any]) -> str:
    """TOML text of a recipe given as nested dicts."""
    import tomli_w

    return tomli_w.dumps(dict(tables))


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """``write_recipe({...})`` or ``write_recipe("toml text")`` → a recipe file in a temporary folder."""

    def write(content: Mapping[str, Any] | str, name: str = "recipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else recipe_text(content), encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_recipe(ftx_home: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``run_recipe(path, overrides=[...], output=...)`` runs in-process and returns the metrics."""
    from ftx.plugins import make_plugin_manager
    from ftx.runner import run_recipe as _run

    def run(path: Path, overrides: list[str] | tuple[str, ...] = (), output: Path | None = None,
            plugins: list[Any] | tuple[Any, ...] = (), **kwargs: Any) -> dict[str, Any]:
        manager = make_plugin_manager(extra_plugins=plugins)
        recipe = manager.load_recipe(path, overrides)
        out = output or tmp_path / f"run-{Path(path).stem}"
        return _run(recipe, manager, output=out, echo=lambda _m: None, **kwargs)

    return run


def tiny_model_recipe_table() -> dict[str, Any]:
    """``[model]`` for the test-sized built-in model."""
    return {"name": "builtin:tiny-llama", "config": dict(TINY_TEST_CONFIG)}
