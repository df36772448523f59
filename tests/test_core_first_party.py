"""The install hints' data (core/ftx/first_party.toml) matches what every first-party plugin registers,
and a first-party command or component that is not installed says which distribution to install."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from ftx.plugins import make_plugin_manager
from ftx.recipe.toml_io import loads
from ftx.registry import known_distributions

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = loads((REPO / "core" / "ftx" / "first_party.toml").read_text(encoding="utf-8"))


def _plugin_folders() -> dict[str, str]:
    """Distribution name -> folder of every plugins/* distribution in the checkout."""
    out = {}
    for pyproject in sorted((REPO / "plugins").glob("*/pyproject.toml")):
        name = loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
        out[name] = pyproject.parent.relative_to(REPO).as_posix()
    return out


def test_every_first_party_distribution_is_listed_with_its_folder():
    assert {d: t["folder"] for d, t in FIRST_PARTY.items()} == _plugin_folders()


def test_the_listed_components_are_what_each_installed_distribution_registers():
    registry = make_plugin_manager().registry
    registered: dict[str, set[tuple[str, str]]] = {}
    for kind, table in registry.components.items():
        for name, reg in table.items():
            registered.setdefault(reg.provenance.distribution or "", set()).add((kind, name))
    checked = 0
    for dist, table in FIRST_PARTY.items():
        if dist not in registered:  # not installed here (ftx-liger is GPU-only)
            continue
        listed = {(kind, name) for kind, names in table.items() if kind != "folder" for name in names}
        assert listed == registered[dist], dist
        checked += 1
    assert checked >= 12
    assert len(known_distributions()) == sum(len(v) for t in FIRST_PARTY.values() for k, v in t.items() if k != "folder")


def test_a_missing_first_party_command_names_its_distribution(monkeypatch):
    from ftx.cli import main

    monkeypatch.setenv("FTX_DISABLE_PLUGINS", "plan")
    result = CliRunner().invoke(main, ["plan", "recipe.toml"])
    assert result.exit_code == 2
    assert "command 'plan' is not installed" in result.output and "pip install ftx-plan" in result.output
    assert "pip install -e plugins/plan" in result.output
    unknown = CliRunner().invoke(main, ["plann"])
    assert unknown.exit_code == 2 and "No such command 'plann'" in unknown.output
