"""The docs are tested against the code: every hook, Protocol method and core recipe key is documented,
and every hook has a test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))

from signatures import format_signature, hookspecs, protocol_methods  # noqa: E402

HOOKS_DOC = (REPO / "docs" / "hooks.md").read_text(encoding="utf-8")
RECIPES_DOC = (REPO / "docs" / "recipes.md").read_text(encoding="utf-8")
HOOK_TESTS = (REPO / "tests" / "test_core_hooks.py").read_text(encoding="utf-8")

HOOKS = list(hookspecs())


def test_hookspecs_found():
    assert len(HOOKS) >= 12


@pytest.mark.parametrize("name,func", HOOKS, ids=[n for n, _ in HOOKS])
def test_every_hook_is_documented_with_its_exact_signature(name, func):
    assert f"def {format_signature(func, name)}:" in HOOKS_DOC, f"docs/hooks.md lacks or misstates {name}"


@pytest.mark.parametrize("name", [n for n, _ in HOOKS])
def test_every_hook_has_a_test(name):
    assert f"def test_{name}(" in HOOK_TESTS, f"tests/test_core_hooks.py has no test_{name}"


@pytest.mark.parametrize("proto,signature", list(protocol_methods()))
def test_every_protocol_method_is_documented(proto, signature):
    section = HOOKS_DOC.split(f"### `{proto}`", 1)
    assert len(section) == 2, f"docs/hooks.md has no section for {proto}"
    assert f"- `{signature}`" in section[1].split("###", 1)[0]


def _sections():
    from ftx.recipe import schema

    for name, obj in vars(schema).items():
        if isinstance(obj, type) and issubclass(obj, schema.Section) and obj is not schema.Section:
            yield name, obj


@pytest.mark.parametrize("section_name,section", list(_sections()), ids=[n for n, _ in _sections()])
def test_every_core_recipe_key_is_documented(section_name, section):
    for key in section.model_fields:
        assert f"| `{key}` |" in RECIPES_DOC, f"docs/recipes.md does not document {section_name}.{key}"
