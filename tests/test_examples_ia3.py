"""The outside example: examples/ftx-ia3, a method ftx does not ship, is pip-installed into a throwaway
virtual environment and used from a recipe, with nothing under core/, hookspecs/ or plugins/ knowing it."""

from __future__ import annotations

import json
import re
import shutil
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from ftx.testing import ThrowawayEnv, recipe_text, tiny_recipe, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ftx-ia3"


def test_nothing_in_ftx_knows_ia3():
    """The example needs no fork: no core, hookspecs or plugin source mentions it, nor the dev install (a plugin's
    tests may use peft's IA3 adapters as an example of an adapter type ftx does not ship)."""
    sources = [REPO / "core", REPO / "hookspecs", *(REPO / "plugins").glob("*/src"), *(REPO / "plugins").glob("*/*.toml")]
    mentions = [
        str(path.relative_to(REPO))
        for top in sources
        for path in ([top] if top.is_file() else top.rglob("*"))
        if path.suffix in (".py", ".toml", ".cfg", ".txt") and "egg-info" not in str(path)
        and re.search(r"\bia3\b|ftx.ia3", path.read_text(encoding="utf-8", errors="ignore"), re.IGNORECASE)
    ]
    assert mentions == []
    assert "ftx-ia3" not in (REPO / "requirements.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ia3_env(tmp_path_factory, ftx_home):
    """ftx-ia3 installed with pip (a regular, non-editable install) from a copy of examples/ftx-ia3."""
    root = tmp_path_factory.mktemp("ia3")
    source = shutil.copytree(EXAMPLE, root / "ftx-ia3",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "runs"))
    env = ThrowawayEnv(root / "venv")
    env.pip_install(source, editable=False)
    return env, root


@pytest.mark.slow
def test_installed_example_passes_its_own_tests(ia3_env, ftx_home):
    env, root = ia3_env
    result = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "ftx-ia3" / "tests"),
                     cwd=root / "ftx-ia3", env={"FTX_HOME": str(ftx_home), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout[-2000:]
    with pytest.raises(PackageNotFoundError):  # installed there, not in the environment running this test
        distribution("ftx-ia3")


@pytest.mark.slow
def test_ftx_run_trains_ia3_vectors_from_a_recipe(ia3_env, ftx_home):
    env, root = ia3_env
    data = write_tiny_dataset(root / "data.jsonl", "alpaca")
    recipe = root / "recipe.toml"
    recipe.write_text(recipe_text(tiny_recipe(data, method="ia3", steps=3, train={"lr": 3e-2})), encoding="utf-8")
    run_dir = root / "run"
    cli = {"FTX_HOME": str(ftx_home), "HF_HUB_OFFLINE": "1"}
    result = env.run("-m", "ftx.cli", "run", str(recipe), "--output", str(run_dir), env=cli)
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    # TINY_TEST_CONFIG: 2 layers x (k_proj 32 + v_proj 32 outputs + down_proj 128 inputs) IA3 scales
    assert metrics["figures"]["trainable_params"] == 2 * (32 + 32 + 128)
    assert metrics["train"]["steps"] == 3
    assert '"method:ia3" = "ftx-ia3 0.1.0"' in (run_dir / "recipe.lock.toml").read_text(encoding="utf-8")

    from safetensors.numpy import load_file

    adapter = load_file(str(run_dir / "model" / "adapter_model.safetensors"))
    assert adapter and all("ia3_l" in name for name in adapter)
    assert any(abs(values - 1.0).max() > 1e-4 for values in adapter.values())  # initialised to 1, then trained



@pytest.mark.slow
def test_the_example_recipe_validates_with_the_plugin_installed(ia3_env, ftx_home):
    env, _ = ia3_env
    result = env.run("-m", "ftx.cli", "validate", str(EXAMPLE / "recipe.toml"), env={"FTX_HOME": str(ftx_home)})
    assert result.returncode == 0 and "method=ia3" in result.stdout, result.stderr
