"""Test helpers for ftx and plugin authors, shipped as a pytest plugin (entry point ``pytest11``).

Fixtures:

* ``ftx_home``: a session-wide cache folder (``$FTX_HOME``), so built-in models are built once;
* ``plugin_manager``: a fresh plugin manager per test (entry points loaded);
* ``tiny_model_path``: the cached folder of ``builtin:tiny-llama`` (model + tokenizer);
* ``tiny_model_factory``: a fresh tiny model per call, loaded from that folder;
* ``tiny_tokenizer``: its tokenizer;
* ``write_recipe``: writes a recipe TOML into a temporary folder and returns its path;
* ``run_recipe``: runs a recipe in-process and returns its ``metrics.json`` content;
* ``tiny_dataset``: writes a small data file in any standard format (``tiny_dataset("alpaca")``).

Functions: :func:`tiny_rows` and :func:`write_tiny_dataset` (the rows behind ``tiny_dataset``),
:func:`tiny_recipe` (a whole test-sized recipe as a dict), :func:`tiny_model_recipe_table`, and
:class:`ThrowawayEnv` (a virtual environment for ``pip install`` tests that sees this one's packages).
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
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


# -- tiny datasets -----------------------------------------------------------------------------

TINY_FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "messages", "completion", "text", "preference", "classification")
"""The formats :func:`tiny_rows` can write: those of the ``ftx-formats`` plugin."""


def _letters(index: int) -> str:
    """A deterministic string of 3 to 5 space-separated letters."""
    return " ".join(chr(97 + (index * 7 + j * 3) % 26) for j in range(3 + index % 3))


def tiny_rows(format: str, count: int = 24) -> list[dict[str, Any]]:
    """``count`` rows of a letter-reversal task in the shape ``format`` reads (see :data:`TINY_FORMATS`).

    Every format gets the same task, so a test can swap formats and compare: the prompt holds a few
    letters, the answer reverses them; ``preference`` prefers the reversed over the unchanged letters;
    ``classification`` labels a string ``short`` (3 letters) or ``long``; ``text`` states the pair.
    """
    if format not in TINY_FORMATS:
        raise ValueError(f"no tiny rows for format {format!r}; choose one of {', '.join(TINY_FORMATS)}")
    rows: list[dict[str, Any]] = []
    for i in range(count):
        letters = _letters(i)
        answer = " ".join(reversed(letters.split()))
        prompt = f"Reverse the letters: {letters}"
        if format == "alpaca":
            rows.append({"instruction": "Reverse the letters.", "input": letters, "output": answer})
        elif format == "sharegpt":
            rows.append({"conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]})
        elif format == "messages":
            rows.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
        elif format == "completion":
            rows.append({"prompt": prompt, "completion": answer})
        elif format == "text":
            rows.append({"text": f"{letters} reversed is {answer}."})
        elif format == "preference":
            rows.append({"prompt": prompt, "chosen": answer, "rejected": letters})
        else:
            rows.append({"text": letters, "label": "short" if len(letters.split()) == 3 else "long"})
    return rows


def write_tiny_dataset(path: Path | str, format: str, count: int = 24) -> Path:
    """Write :func:`tiny_rows` as JSON lines to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row) for row in tiny_rows(format, count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """``tiny_dataset("alpaca", count=24)`` → a JSON-lines file of that format in a temporary folder."""

    def write(format: str, count: int = 24, name: str | None = None) -> Path:
        return write_tiny_dataset(tmp_path / (name or f"{format}.jsonl"), format, count)

    return write


def tiny_recipe(
    data_file: Path | str,
    format: str = "alpaca",
    *,
    method: str | Mapping[str, Any] = "full",
    objective: str | Mapping[str, Any] = "sft",
    evaluators: list[str | Mapping[str, Any]] | tuple[str | Mapping[str, Any], ...] = (),
    steps: int = 2,
    **tables: Any,
) -> dict[str, Any]:
    """A test-sized recipe as a dict for ``write_recipe``: ``data_file`` in ``format``, the tiny model,
    ``steps`` steps of batch 4.

    ``method``, ``objective`` and each evaluator are a name or a whole table (``{"use": ..., ...}``);
    keyword arguments add or replace tables, and a ``data``, ``train`` or ``evaluation`` mapping is
    merged into the default one (``data={"max_length": 32}``). One CPU thread: tiny matrices gain
    nothing from more, and lose a lot when other processes share the cores.
    """

    def table(value: str | Mapping[str, Any]) -> dict[str, Any]:
        return {"use": value} if isinstance(value, str) else dict(value)

    recipe: dict[str, Any] = {
        "model": tiny_model_recipe_table(),
        "data": {"format": format, "train": str(data_file), "eval": 0.25, "max_length": 64},
        "method": table(method),
        "objective": table(objective),
        "train": {"max_steps": steps, "batch_size": 4, "lr": 1e-3, "log_every": 1, "threads": 1},
        # no report samples and no forgetting check: each would generate or score beyond the test's need
        "evaluation": {"samples": 0, "forgetting": False},
    }
    if evaluators:
        recipe["evaluators"] = [table(e) for e in evaluators]
    for key, value in tables.items():
        if key in ("data", "train", "evaluation") and isinstance(value, Mapping):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


# -- installing distributions in tests ---------------------------------------------------------


class ThrowawayEnv:
    """A virtual environment under ``path`` that sees every package of the running one.

    ``pip_install`` installs into it alone (``--no-deps --no-build-isolation``, so nothing is
    downloaded), and ``run`` starts its Python: the way to test that a distribution installs with pip
    and is found through its entry points, without touching the environment running the tests.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not (self.path / "pyvenv.cfg").exists():
            import venv

            venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(self.path)
            # a .pth file runs its `import` lines at start-up: add this environment's site folders
            # (with their own .pth files, where editable installs live) after the new one's
            parents = [p for p in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")} if p]
            lines = [f"import site; site.addsitedir({p!r})" for p in sorted(parents)]
            (self.site_packages / "_ftx_parent_env.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    @property
    def site_packages(self) -> Path:
        """The environment's own site-packages folder."""
        base = str(self.path)
        names = sysconfig.get_scheme_names()
        scheme = "venv" if "venv" in names else ("nt" if os.name == "nt" else "posix_prefix")
        return Path(sysconfig.get_path("purelib", scheme, vars={"base": base, "platbase": base}))

    def run(self, *args: str, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run this environment's Python with ``args``; output is captured as text."""
        full_env = {**os.environ, **(env or {})}
        return subprocess.run([str(self.python), *args], capture_output=True, text=True, cwd=cwd, env=full_env,
                              timeout=timeout, check=False)

    def pip_install(self, *paths: Path | str, editable: bool = True) -> subprocess.CompletedProcess[str]:
        """``pip install [-e] PATH ...`` into this environment only; raises with pip's output on failure."""
        args = ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-input",
                "--disable-pip-version-check", "--no-index", "--quiet"]
        for path in paths:
            args += ["-e", str(path)] if editable else [str(path)]
        result = self.run(*args)
        if result.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(map(str, paths))} failed:\n{result.stdout}\n{result.stderr}")
        return result
