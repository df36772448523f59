"""docs/plugins/ stays true: every hook and Protocol method has its place in the call-order reference,
every fixture and helper of ftx.testing is documented, every kind is listed, and every link resolves."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from ftx.scaffold import KINDS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "plugins"
sys.path.insert(0, str(REPO / "docs"))

from signatures import hookspecs, protocol_methods  # noqa: E402

REFERENCE = (DOCS / "reference.md").read_text(encoding="utf-8")
TESTING_DOC = (DOCS / "testing.md").read_text(encoding="utf-8")
PAGES = sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("name", [name for name, _ in hookspecs()])
def test_every_hook_has_its_moment_in_the_reference(name):
    assert f"`{name}(" in REFERENCE, f"docs/plugins/reference.md does not say when {name} is called"


@pytest.mark.parametrize("proto,signature", list(protocol_methods()))
def test_every_protocol_method_is_in_the_reference(proto, signature):
    method = signature.split("(", 1)[0]
    row = next((line for line in REFERENCE.splitlines() if line.startswith(f"| `{proto}` |")), None)
    assert row is not None, f"docs/plugins/reference.md has no row for {proto}"
    assert f"`{method}`" in row
    if proto != "RunContext":
        assert f"`{proto}.{method}(" in REFERENCE, f"reference.md does not say when {proto}.{method} is called"


def _testing_module():
    source = (REPO / "core" / "ftx" / "testing.py").read_text(encoding="utf-8")
    return ast.parse(source)


def _is_fixture(node: ast.FunctionDef) -> bool:
    return any("fixture" in ast.unparse(d) for d in node.decorator_list)


@pytest.mark.parametrize("node", [n for n in _testing_module().body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                                  and not n.name.startswith("_")], ids=lambda n: n.name)
def test_every_fixture_and_helper_of_ftx_testing_is_documented(node):
    if isinstance(node, ast.FunctionDef) and _is_fixture(node):
        assert f"| `{node.name}` |" in TESTING_DOC, f"docs/plugins/testing.md lacks the fixture {node.name}"
    else:
        assert f"`{node.name}" in TESTING_DOC, f"docs/plugins/testing.md lacks {node.name}"


def test_every_kind_is_listed_and_every_command_shown_is_valid():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for kind in KINDS:
        assert f"| `{kind}` |" in index
    for page in PAGES:
        for kind in re.findall(r"ftx new-plugin [a-z0-9-]+ --kind ([a-z-]+)\b", page.read_text(encoding="utf-8")):
            assert kind in KINDS, f"{page.name} shows --kind {kind}"


@pytest.mark.parametrize("page", PAGES + [REPO / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
