"""The CLI: light commands never import torch; exit codes are 0, 2 (bad recipe/usage) and 1 (run failure)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from ftx.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = [m for m in ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes") if m in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["validate", "recipes/quickstart.toml"], ["--version"]])
def test_light_commands_never_import_torch(args):
    result = _probe(*args)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY="), result.stderr


def test_validate_bad_recipe_exits_2_and_names_the_key(tmp_path):
    recipe = (REPO / "recipes" / "quickstart.toml").read_text().replace("lr = ", "learning_rat = ")
    recipe = recipe.replace('train = "data/reverse.jsonl"', f'train = "{REPO / "recipes" / "data" / "reverse.jsonl"}"')
    path = tmp_path / "bad.toml"
    path.write_text(recipe)
    result = _probe("validate", str(path))
    assert result.returncode == 2
    assert "train.learning_rat: unknown key; did you mean 'lr'?" in result.stderr


def test_unknown_method_exits_2_and_lists_installed(tmp_path):
    recipe = (REPO / "recipes" / "quickstart.toml").read_text().replace('use = "full"', 'use = "lorra"')
    path = tmp_path / "recipes" / "bad.toml"
    path.parent.mkdir()
    (tmp_path / "recipes" / "data").symlink_to(REPO / "recipes" / "data")
    path.write_text(recipe)
    result = _probe("validate", str(path))
    assert result.returncode == 2
    assert "unknown method 'lorra'" in result.stderr and "Installed methods: " in result.stderr


def test_usage_error_exits_2():
    assert _probe("run").returncode == 2
    assert _probe("no-such-command").returncode == 2


def test_version_lists_plugins():
    result = _probe("--version")
    assert "ftx 0.1" in result.stdout and "plugin full: ftx-full" in result.stdout


def test_unknown_builtin_model_is_a_recipe_error(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n' * 4)
    (tmp_path / "r.toml").write_text(
        '[model]\nname = "builtin:no-such-model"\n[data]\nformat = "alpaca"\ntrain = "train.jsonl"\n'
        '[method]\nuse = "full"\n[objective]\nuse = "sft"\n'
    )
    result = _probe("validate", str(tmp_path / "r.toml"))
    assert result.returncode == 2
    assert "model.name: unknown built-in model 'builtin:no-such-model'; built-ins: builtin:small-llama, builtin:tiny-llama" in result.stderr


def test_run_failure_exits_1_and_writes_no_metrics(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n' * 4)
    (tmp_path / "broken-model").mkdir()
    (tmp_path / "broken-model" / "config.json").write_text("{}")
    (tmp_path / "r.toml").write_text(
        '[model]\nname = "broken-model"\n[data]\nformat = "alpaca"\ntrain = "train.jsonl"\n'
        '[method]\nuse = "full"\n[objective]\nuse = "sft"\n'
    )
    result = _probe("run", str(tmp_path / "r.toml"), "--output", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert not (tmp_path / "out" / "model").exists()
    assert (tmp_path / "out" / "error.txt").exists()
