"""`ftx new-plugin`: every kind scaffolds a distribution that pip installs, passes its own tests at
once, and is used by a recipe (the scaffold's tests run one); bad names and occupied folders are refused."""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from click.testing import CliRunner
from ftx.cli import _PLUGIN_KINDS, main
from ftx.scaffold import KINDS, Names, ScaffoldError, new_plugin, plan_files
from ftx.testing import ThrowawayEnv

REPO = Path(__file__).resolve().parents[1]
LIGHT_MODULES = {"__future__", "collections", "typing", "pydantic", "ftx_hookspecs"}


def test_cli_offers_every_kind():
    assert tuple(_PLUGIN_KINDS) == tuple(KINDS)


def test_names_follow_one_scheme():
    names = Names.from_name("top-layers")
    assert (names.component, names.distribution, names.package, names.class_name) == (
        "top-layers", "ftx-top-layers", "ftx_top_layers", "TopLayers")
    assert Names.from_name("ftx-top-layers") == names


@pytest.mark.parametrize("kind", list(KINDS))
def test_scaffold_files(kind):
    files = plan_files(f"demo-{kind}", kind)
    package = f"ftx_demo_{kind.replace('-', '_')}"
    module = KINDS[kind].module
    assert set(files) == {"pyproject.toml", "README.md", ".gitignore", f"src/{package}/__init__.py",
                          f"src/{package}/{module}.py", f"tests/test_{package}.py"}
    pyproject = files["pyproject.toml"]
    assert f'[project.entry-points.ftx]\ndemo-{kind} = "{package}"' in pyproject
    assert '"ftx-hookspecs>=1,<2"' in pyproject
    assert all(f'"{dist}"' in pyproject for dist in KINDS[kind].test_plugins)  # what its recipe test runs on
    for path, text in files.items():
        assert "{{" not in text, f"{path} keeps a placeholder"
        if path.endswith(".py"):
            compile(text, path, "exec")
    init = ast.parse(files[f"src/{package}/__init__.py"])
    imported = {n.module.split(".")[0] for n in ast.walk(init) if isinstance(n, ast.ImportFrom) and n.level == 0}
    imported |= {a.name.split(".")[0] for n in ast.walk(init) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= LIGHT_MODULES, f"__init__.py imports {imported - LIGHT_MODULES}: it must stay light"
    hooks = {n.name for n in init.body if isinstance(n, ast.FunctionDef)}
    assert KINDS[kind].hook in hooks
    assert f"use = \"demo-{kind}\"" in files["README.md"] or f'format = "demo-{kind}"' in files["README.md"]


@pytest.mark.parametrize("name", ["Top", "top_layers", "-top", "top--layers", "1top", ""])
def test_a_bad_name_is_refused_and_nothing_is_written(tmp_path, name):
    with pytest.raises(ScaffoldError, match="invalid"):
        new_plugin(name, "method", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_occupied_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not empty"):
        new_plugin("top-layers", "method", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_cli_writes_the_distribution_and_exits_2_on_bad_input(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["new-plugin", "top-layers", "--kind", "method", "--dir", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "src" / "ftx_top_layers" / "method.py").is_file()
    assert "pip install -e" in result.output
    again = runner.invoke(main, ["new-plugin", "top-layers", "--kind", "method", "--dir", str(tmp_path / "p")])
    assert again.exit_code == 2 and "not empty" in again.output
    assert runner.invoke(main, ["new-plugin", "x", "--kind", "metod"]).exit_code == 2


def test_new_plugin_never_imports_torch(tmp_path):
    probe = ("import sys\nfrom ftx.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
             "print('HEAVY=' + ','.join(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe, "new-plugin", "demo", "--kind", "evaluator",
                             "--dir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY="


# -- scaffold -> pip install -e -> its tests pass -> a recipe uses it ---------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory, ftx_home):
    """All six kinds scaffolded, pip-installed (editable) into one throwaway environment, their tests run once."""
    root = tmp_path_factory.mktemp("scaffolds")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # the generated tests' root, not the repo's
    folders = {kind: new_plugin(f"demo-{kind}", kind, root / f"ftx-demo-{kind}") for kind in KINDS}
    env = ThrowawayEnv(root / "venv")
    env.pip_install(*folders.values())
    report = root / "results.xml"
    run = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                  *[str(folder / "tests") for folder in folders.values()], cwd=root,
                  env={"FTX_HOME": str(ftx_home), "HF_HUB_OFFLINE": "1"})
    outcomes: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for case in ET.parse(report).iter("testcase"):
        kind = next(k for k in KINDS if case.get("classname", "").endswith(f"test_ftx_demo_{k.replace('-', '_')}"))
        failed = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[kind][case.get("name", "")] = failed[0] if failed else "passed"
    return env, outcomes, run


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_scaffold_installs_passes_its_tests_and_a_recipe_uses_it(installed, kind):
    env, outcomes, run = installed
    results = outcomes[kind]
    assert len(results) >= 3, run.stdout[-3000:]
    assert all(outcome == "passed" for outcome in results.values()), f"{results}\n{run.stdout[-3000:]}"
    assert any(name.startswith("test_a_recipe_uses_it") for name in results)  # a whole run with the component
    # the distribution went into the throwaway environment, not into the one running these tests
    with pytest.raises(PackageNotFoundError):
        distribution(f"ftx-demo-{kind}")
    shown = env.run("-c", f"from importlib.metadata import version; print(version('ftx-demo-{kind}'))")
    assert shown.stdout.strip() == "0.1.0", shown.stderr
