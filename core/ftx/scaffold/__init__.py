"""``ftx new-plugin``: write a new plugin distribution that installs and passes its tests at once.

A scaffold is a complete distribution: ``pyproject.toml`` with the ``ftx`` entry point and
``ftx-hookspecs>=1,<2``, ``src/<package>/__init__.py`` with the registration hook and the options
model (light: no torch), ``src/<package>/<module>.py`` with a small working implementation of the
component's Protocol, ``tests/test_<package>.py`` built on the ``ftx.testing`` fixtures (one test
runs a recipe that uses the component), and a README. The files come from the templates in
``templates/<kind>/`` and ``templates/common/``, where ``{{key}}`` is replaced by the names below.

This module imports only the standard library and ``ftx_hookspecs``: ``ftx --help`` imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ftx_hookspecs import KIND_BY_NAME

from ..errors import FtxError

TEMPLATES = "templates"
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class ScaffoldError(FtxError):
    """A plugin cannot be scaffolded as asked (a bad name, a folder in the way)."""

    exit_code = 2


@dataclass(frozen=True)
class Kind:
    """What one ``--kind`` scaffolds: its module, the hook it implements and how a recipe selects it."""

    name: str
    module: str
    recipe: str
    """A recipe excerpt for the README; ``{{name}}`` is the component's name."""
    test_plugins: tuple[str, ...] = ("ftx-formats", "ftx-full", "ftx-sft", "ftx-eval-basic")
    """The ftx distributions whose components the scaffold's recipe test uses (its ``test`` extra)."""

    @property
    def hook(self) -> str:
        """The registration hook, from ftx_hookspecs' table of component kinds."""
        return KIND_BY_NAME[self.name.replace("-", " ")].hook


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("method", "method",
             '[method]\nuse = "{{name}}"\ntrainable = ["*.mlp.*"]     # parameter-name patterns that train'),
        Kind("objective", "objective",
             '[objective]\nuse = "{{name}}"\nlabel_smoothing = 0.0'),
        Kind("data-format", "data_format",
             '[data]\nformat = "{{name}}"\ntrain = "data/train.jsonl"    # rows {"question": ..., "answer": ...}\n'
             '# system = "You are terse."   # an option of this format'),
        Kind("evaluator", "evaluator",
             '[[evaluators]]\nuse = "{{name}}"\nmax_new_tokens = 16\nlimit = 50'),
        Kind("reward", "reward",
             '[[evaluators]]                 # the reward evaluator of ftx-rewards scores greedy answers\n'
             'use = "reward"\nrewards = [{use = "{{name}}"}]\n\n'
             '# or, to train from it:  [objective] use = "rl", rewards = [{use = "{{name}}"}]',
             test_plugins=("ftx-formats", "ftx-full", "ftx-sft", "ftx-rewards")),
        Kind("logger", "logger",
             '[[loggers]]\nuse = "{{name}}"\nfile = "{{name}}.jsonl"       # written in the run folder'),
    )
}
"""Every kind ``ftx new-plugin --kind`` accepts."""


@dataclass(frozen=True)
class Names:
    """The names a plugin called NAME goes by."""

    component: str
    """What recipes write after ``use =`` (NAME without a leading ``ftx-``)."""
    distribution: str
    """The distribution on PyPI: ``ftx-<component>``."""
    package: str
    """The import package: ``ftx_<component with _>``."""
    class_name: str
    """The component's class: ``<Component>`` in CamelCase."""

    @classmethod
    def from_name(cls, name: str) -> Names:
        """Derive every name from NAME; refuse names a recipe or Python could not use."""
        component = name.removeprefix("ftx-")
        if not NAME.match(component):
            raise ScaffoldError(
                f"plugin name {name!r} is invalid: use lowercase letters and digits in words joined by '-', "
                "starting with a letter (e.g. 'top-layers')"
            )
        words = component.split("-")
        return cls(
            component=component,
            distribution=f"ftx-{component}",
            package="ftx_" + "_".join(words),
            class_name="".join(w[:1].upper() + w[1:] for w in words),
        )


def _template(kind_folder: str, name: str) -> str:
    return resources.files(__package__).joinpath(TEMPLATES, kind_folder, name).read_text(encoding="utf-8")


def _fill(text: str, values: dict[str, str], source: str) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    left = re.search(r"\{\{\w+\}\}", text)
    if left:  # a template names a value nobody provides: a bug in the template, not in the input
        raise RuntimeError(f"template {source} has an unknown placeholder {left.group(0)}")
    return text


def plan_files(name: str, kind: str) -> dict[str, str]:
    """The files of a new plugin, as relative path → text, without writing anything."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown plugin kind {kind!r}; choose one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    names = Names.from_name(name)
    values = {
        "name": names.component,
        "dist": names.distribution,
        "package": names.package,
        "class": names.class_name,
        "module": spec.module,
        "kind": spec.name,
        "hook": spec.hook,
        "test_requires": ", ".join(f'"{dist}"' for dist in ("pytest>=7", *spec.test_plugins)),
    }
    values["recipe"] = _fill(spec.recipe, values, f"{kind} recipe")
    pkg = f"src/{names.package}"
    layout = {
        "pyproject.toml": ("common", "pyproject.toml.tmpl"),
        "README.md": ("common", "README.md.tmpl"),
        ".gitignore": ("common", "gitignore.tmpl"),
        f"{pkg}/__init__.py": (kind, "__init__.py.tmpl"),
        f"{pkg}/{spec.module}.py": (kind, "module.py.tmpl"),
        f"tests/test_{names.package}.py": (kind, "test.py.tmpl"),
    }
    return {path: _fill(_template(folder, file), values, f"{folder}/{file}") for path, (folder, file) in layout.items()}


def new_plugin(name: str, kind: str, directory: Path | None = None) -> Path:
    """Write a new plugin distribution into ``directory`` (default ``./ftx-<name>``) and return it.

    Refuses a folder that exists and is not empty, so nothing of the user's is overwritten; writes
    nothing at all when the name or kind is wrong.
    """
    files = plan_files(name, kind)
    target = Path(directory) if directory is not None else Path.cwd() / Names.from_name(name).distribution
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty; choose another --dir or remove it")
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
