"""The two-command promise: the quickstart trains offline and exact match goes from <10% to >80%."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ftx.errors import OutputRefused
from ftx.rundir import prepare_run_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory, ftx_home):
    out = tmp_path_factory.mktemp("quickstart") / "q"
    result = subprocess.run(
        [sys.executable, "-m", "ftx.cli", "run", "recipes/quickstart.toml", "--output", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_quickstart_learns_the_task(quickstart_run):
    out, result = quickstart_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["before"]["exact-match"]["exact_match"] < 0.10
    assert metrics["after"]["exact-match"]["exact_match"] > 0.80
    assert metrics["after"]["loss"]["loss"] < metrics["before"]["loss"]["loss"] / 10
    assert metrics["data"] == {"train": 1800, "eval": 200, "kept": 2000, "dropped": {}, "first_bad": {}, "duplicates": 0}
    assert "exact-match exact_match: 0 -> " in result.stdout


@pytest.mark.slow
def test_quickstart_run_folder_contract(quickstart_run):
    out, _ = quickstart_run
    from ftx.recipe.toml_io import loads

    lock = loads((out / "recipe.lock.toml").read_text())
    assert lock["method"] == {"use": "full", "freeze": [], "freeze_layers": 0}
    assert lock["ftx"]["seed"] == 42 and lock["ftx"]["libraries"]["torch"].startswith("2.")
    assert lock["ftx"]["components"]["method:full"].startswith("ftx-full ")
    assert lock["data"]["train"] == str(REPO / "recipes" / "data" / "reverse.jsonl")
    assert (out / "logs.jsonl").read_text().count("\n") >= 8
    assert not (out / "error.txt").exists()


@pytest.mark.slow
def test_quickstart_model_loads_with_plain_transformers_and_stops(quickstart_run):
    out, _ = quickstart_run
    script = (
        "import sys, json\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out / 'model')!r})\n"
        f"t = AutoTokenizer.from_pretrained({str(out / 'model')!r})\n"
        "ids = t.apply_chat_template([{'role': 'user', 'content': 'Reverse the letters.\\na b c d'}], add_generation_prompt=True, return_tensors='pt', return_dict=True)\n"
        "o = m.generate(**ids, max_new_tokens=20, do_sample=False)\n"
        "new = o[0, ids['input_ids'].shape[1]:].tolist()\n"
        "print(json.dumps({'text': t.decode(new, skip_special_tokens=True), 'stopped': new[-1] in m.generation_config.eos_token_id, 'ftx': 'ftx' in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply == {"text": "d c b a", "stopped": True, "ftx": False}


def test_non_empty_output_is_refused_without_a_flag(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="--resume.*--overwrite"):
        prepare_run_dir(tmp_path)
    with pytest.raises(OutputRefused, match="not an ftx run folder"):
        prepare_run_dir(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_an_ftx_run_folder(tmp_path):
    (tmp_path / "recipe.lock.toml").write_text('[ftx]\nversion = "0.1.0"\n')  # what ftx writes: an [ftx] table
    (tmp_path / "model").mkdir()
    assert prepare_run_dir(tmp_path, overwrite=True) == tmp_path.resolve()
    assert list(tmp_path.iterdir()) == []


def test_output_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputRefused, match="symbolic link"):
        prepare_run_dir(tmp_path / "link")
