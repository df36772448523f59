"""Plugin discovery through real entry points: new, broken, conflicting and filtered plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ftx.plugins import make_plugin_manager

REPO = Path(__file__).resolve().parents[1]

DEMO_METHOD = '''
from ftx_hookspecs import MethodSpec, Options, hookimpl

class TopOptions(Options):
    layers: int = 1

class TopLayers:
    """Trains only the last `layers` transformer layers and the norm."""
    def __init__(self, options):
        self.options = options
    def load_kwargs(self, ctx):
        return {}
    def apply(self, model, ctx):
        n = model.config.num_hidden_layers
        keep = tuple(f".layers.{i}." for i in range(n - self.options.layers, n))
        for name, p in model.named_parameters():
            p.requires_grad = any(k in name for k in keep)
        return model
    def save(self, model, path, ctx):
        model.save_pretrained(path)

@hookimpl
def ftx_register_methods(register):
    register(MethodSpec("top-layers", "Train only the top N layers.", "{module}:TopLayers", TopOptions))
'''


def make_distribution(
    root: Path, dist: str, module: str, code: str, entry_name: str | None = None, requires: tuple[str, ...] = ()
) -> Path:
    """Write an installed-looking distribution (module + dist-info with an ``ftx`` entry point) under ``root``."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(textwrap.dedent(code).replace("{module}", module), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    requires_lines = "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n{requires_lines}", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[ftx]\n{entry_name or module} = {module}\n", encoding="utf-8")
    return root


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_entry_point_plugin_registers_with_its_distribution(site, ftx_home):
    make_distribution(site, "ftx-demo-method", "ftx_demo_method", DEMO_METHOD)
    manager = make_plugin_manager()
    found = manager.registry.get("method", "top-layers")
    assert found.provenance.distribution == "ftx-demo-method"
    assert found.provenance.version == "0.3"


def test_broken_plugin_is_reported_and_others_keep_working(site, ftx_home):
    make_distribution(site, "ftx-broken", "ftx_broken", "raise ImportError('needs libfoo')\n")
    manager = make_plugin_manager()
    [broken] = [b for b in manager.registry.broken if b.name == "ftx_broken"]
    assert broken.distribution == "ftx-broken" and "needs libfoo" in broken.error
    assert "full" in manager.registry.names("method")
    message = manager.registry.missing_message("method", "top-layers")
    assert "ftx_broken" in message and "needs libfoo" in message


def test_misspelled_hook_fails_that_plugin_loudly(site, ftx_home):
    code = "from ftx_hookspecs import hookimpl\n@hookimpl\ndef ftx_register_method(register):\n    pass\n"
    make_distribution(site, "ftx-typo", "ftx_typo", code)
    manager = make_plugin_manager()
    [broken] = [b for b in manager.registry.broken if b.name == "ftx_typo"]
    assert "ftx_register_method" in broken.error
    assert "ftx_typo" not in manager.plugins


def test_registration_error_marks_plugin_broken(site, ftx_home):
    code = "from ftx_hookspecs import hookimpl\n@hookimpl\ndef ftx_register_methods(register):\n    raise RuntimeError('boom')\n"
    make_distribution(site, "ftx-boom", "ftx_boom", code)
    manager = make_plugin_manager()
    assert any(b.name == "ftx_boom" and "boom" in b.error for b in manager.registry.broken)


def test_two_plugins_with_one_name_is_an_error_naming_both(site, ftx_home):
    code = DEMO_METHOD
    make_distribution(site / "a", "ftx-one", "ftx_one", code)
    make_distribution(site / "b", "ftx-two", "ftx_two", code)
    sys.path[:0] = [str(site / "a"), str(site / "b")]
    try:
        manager = make_plugin_manager()
    finally:
        sys.path.remove(str(site / "a"))
        sys.path.remove(str(site / "b"))
    from ftx.errors import ComponentNotFound

    with pytest.raises(ComponentNotFound) as exc:
        manager.registry.get("method", "top-layers", "method.use")
    assert "ftx-one 0.3" in str(exc.value) and "ftx-two 0.3" in str(exc.value)


def test_load_and_disable_filters(ftx_home, monkeypatch):
    monkeypatch.setenv("FTX_LOAD_PLUGINS", "full,sft")
    manager = make_plugin_manager()
    assert set(p for p, info in manager.plugins.items() if not info.builtin) == {"full", "sft"}
    monkeypatch.delenv("FTX_LOAD_PLUGINS")
    monkeypatch.setenv("FTX_DISABLE_PLUGINS", "full")
    manager = make_plugin_manager()
    assert "full" not in manager.plugins and "sft" in manager.plugins
    assert "ftx-full" in manager.registry.missing_message("method", "full")


def test_trace_prints_hook_calls(ftx_home, monkeypatch, capsys):
    monkeypatch.setenv("FTX_TRACE_PLUGINS", "1")
    make_plugin_manager()
    assert "ftx_register_methods" in capsys.readouterr().err


def _cli(*args: str, env_extra: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ftx.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_plugins_json_lists_every_plugin_and_the_broken_one(tmp_path, ftx_home):
    site = make_distribution(tmp_path / "site", "ftx-broken", "ftx_broken", "raise ImportError('needs libfoo')\n")
    result = _cli("plugins", "--json", env_extra={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    assert rows["full"]["distribution"] == "ftx-full" and rows["full"]["registers"]["method"] == ["full"]
    assert rows["sft"]["version"] and "sft" in rows["sft"]["registers"]["objective"]
    assert rows["ftx_broken"]["status"] == "error" and "needs libfoo" in rows["ftx_broken"]["error"]
    validate = _cli("validate", "recipes/quickstart.toml", env_extra={"PYTHONPATH": str(site)})
    assert validate.returncode == 0, validate.stderr


@pytest.mark.slow
def test_new_method_from_a_throwaway_distribution_runs_from_a_recipe(tmp_path, ftx_home):
    """The design card's promise: a third party's method, used with no change to this repository."""
    site = make_distribution(tmp_path / "site", "ftx-demo-method", "ftx_demo_method", DEMO_METHOD)
    rows = [json.dumps({"instruction": "Copy the letters.", "input": x, "output": x}) for x in ["a b", "c d e", "f g"] * 8]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "recipe.toml").write_text(textwrap.dedent("""
        [model]
        name = "builtin:tiny-llama"
        config = {hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2}
        [data]
        format = "alpaca"
        train = "train.jsonl"
        eval = 0.25
        [method]
        use = "top-layers"
        layers = 1
        [objective]
        use = "sft"
        [train]
        max_steps = 3
        batch_size = 4
        """), encoding="utf-8")
    result = _cli("run", str(tmp_path / "recipe.toml"), "--output", str(tmp_path / "run"), env_extra={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    figures = metrics["figures"]
    assert 0 < figures["trainable_params"] < figures["total_params"]
    lock = (tmp_path / "run" / "recipe.lock.toml").read_text()
    assert '"method:top-layers" = "ftx-demo-method 0.3"' in lock


def test_plugin_built_for_newer_hooks_is_reported_with_versions(site, ftx_home):
    make_distribution(site, "ftx-future", "ftx_future", DEMO_METHOD, requires=("ftx-hookspecs>=2.1,<3",))
    make_distribution(site / "ok", "ftx-fine", "ftx_fine", DEMO_METHOD.replace("top-layers", "top-layers-2"),
                      requires=("ftx-hookspecs>=1,<2",))
    sys.path.insert(0, str(site / "ok"))
    try:
        manager = make_plugin_manager()
    finally:
        sys.path.remove(str(site / "ok"))
    [broken] = [b for b in manager.registry.broken if b.name == "ftx_future"]
    assert "ftx-future 0.3 needs ftx-hookspecs<3,>=2.1 but 1." in broken.error
    assert "ftx_future" not in sys.modules  # never imported
    assert "top-layers-2" in manager.registry.names("method")  # the rest keep working
