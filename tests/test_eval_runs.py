"""Evaluation end to end on tiny runs: evaluators swapped by recipe, report, gate exit code, `ftx eval`,
early stopping with the overfitting warning, and the forgetting check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ftx.cli import main
from ftx.demo_data import reverse_rows, task_rows, write_jsonl
from ftx.testing import TINY_TEST_CONFIG, recipe_text, tiny_model_recipe_table

REPO = Path(__file__).resolve().parents[1]
TINY = "{" + ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items()) + "}"


def _output(result: Any) -> str:
    return result.output + (getattr(result, "stderr", "") or "")


@pytest.fixture(scope="module")
def rouge_run(ftx_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The quickstart recipe with exact-match swapped for rouge (text only), run small through the CLI."""
    folder = tmp_path_factory.mktemp("rouge")
    write_jsonl(reverse_rows(60, seed=0), folder / "data" / "reverse.jsonl")
    text = (REPO / "recipes" / "quickstart.toml").read_text(encoding="utf-8")
    assert 'use = "exact-match"' in text
    (folder / "recipe.toml").write_text(text.replace('use = "exact-match"', 'use = "rouge"'), encoding="utf-8")
    out = folder / "run"
    result = CliRunner().invoke(main, [
        "run", str(folder / "recipe.toml"), "--output", str(out),
        "--set", f"model.config={TINY}", "--set", "train.max_steps=20", "--set", "train.log_every=5",
        "--set", "train.eval_every=10", "--set", "train.batch_size=16", "--set", "evaluators.0.max_new_tokens=12",
        "--set", "evaluation.baseline_shots=1", "--set", "evaluation.samples=3",
        "--set", 'evaluation.gate.rouge.rouge1=">= 0.99"', "--set", 'evaluation.gate.loss.loss="< 100"',
    ])
    return {"result": result, "out": out, "metrics": json.loads((out / "metrics.json").read_text())}


@pytest.mark.slow
def test_a_recipe_swapping_exact_match_for_rouge_reports_rouge(rouge_run: dict[str, Any]) -> None:
    metrics, out = rouge_run["metrics"], rouge_run["out"]
    assert set(metrics["after"]) == {"rouge", "loss"}
    assert set(metrics["after"]["rouge"]) == {"rouge1", "rouge2", "rougeL"}
    assert metrics["baseline_shots"] == 1 and set(metrics["baseline"]) == {"rouge", "loss"}
    page = (out / "report.html").read_text(encoding="utf-8")
    for label in ("rouge.rouge1", "rouge.rougeL", "loss.perplexity", "1-shot prompt"):
        assert label in page
    assert "exact-match" not in page.split("Resolved recipe")[0]
    assert re.search(r"<img id='curves' [^>]*src='data:image/png;base64,iVBOR", page)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    samples = json.loads((out / "samples.json").read_text())
    assert len(samples) == 3 and {"prompt", "reference", "before", "baseline", "after"} <= set(samples[0])
    assert "Reverse the letters." in page and samples[0]["reference"] in page


@pytest.mark.slow
def test_a_failing_gate_exits_3_naming_the_threshold(rouge_run: dict[str, Any]) -> None:
    result, metrics = rouge_run["result"], rouge_run["metrics"]
    assert result.exit_code == 3, _output(result)
    assert "rouge.rouge1 >= 0.99: got" in _output(result)
    assert "loss.loss" not in _output(result).split("gate failed")[1]  # the threshold that held is not named
    assert metrics["gate"]["passed"] is False
    assert [c["passed"] for c in metrics["gate"]["checks"]] == [False, True]
    assert (rouge_run["out"] / "model" / "config.json").is_file()  # the run itself completed


@pytest.mark.slow
def test_ftx_eval_on_the_run_folder_reproduces_after(rouge_run: dict[str, Any]) -> None:
    out = rouge_run["out"]
    result = CliRunner().invoke(main, ["eval", str(out), "--set", "evaluation.gate={}"])
    assert result.exit_code == 0, _output(result)
    written = json.loads((out / "eval.json").read_text())
    assert written["eval"] == rouge_run["metrics"]["after"]
    assert written["model"] == str(out / "model")


@pytest.mark.slow
def test_ftx_eval_keeps_the_gate_of_the_run(rouge_run: dict[str, Any], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(rouge_run["out"]), "--output", str(tmp_path / "e.json")])
    assert result.exit_code == 3 and "rouge.rouge1 >= 0.99" in _output(result)


def test_ftx_eval_on_a_model_folder_needs_a_recipe(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "pass --recipe" in _output(result)


@pytest.mark.slow
def test_report_opens_in_headless_chromium(rouge_run: dict[str, Any], tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    shot = tmp_path / "report.png"
    subprocess.run([
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--screenshot={shot}",
        "--window-size=1200,1600", (rouge_run["out"] / "report.html").as_uri(),
    ], check=True, capture_output=True, timeout=120)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1600)
    colours = image.getcolors(maxcolors=1 << 20) or []

    def pixels_near(rgb: tuple[int, int, int]) -> int:
        return sum(n for n, c in colours if all(abs(a - b) < 40 for a, b in zip(c, rgb)))

    assert pixels_near((31, 119, 180)) > 100  # the training-loss line of the embedded curves
    assert pixels_near((214, 39, 40)) > 50  # the validation-loss line
    assert pixels_near((243, 243, 243)) > 1000  # the score table's header cells


def _run(run_recipe: Any, write_recipe: Any, tables: dict[str, Any]) -> dict[str, Any]:
    return run_recipe(write_recipe(tables))


@pytest.mark.slow
def test_over_training_a_tiny_set_stops_early_and_warns(run_recipe: Any, write_recipe: Any, tmp_path: Path) -> None:
    write_jsonl(task_rows("sort", 24, seed=3), tmp_path / "d.jsonl")
    metrics = _run(run_recipe, write_recipe, {
        "model": tiny_model_recipe_table(),
        "data": {"format": "alpaca", "train": "d.jsonl", "eval": 0.5, "max_length": 64},
        "method": {"use": "full"}, "objective": {"use": "sft"},
        "train": {"max_steps": 80, "lr": 1e-2, "batch_size": 12, "log_every": 5, "eval_every": 5,
                  "scheduler": "constant"},
        "evaluators": [{"use": "loss"}],
        "evaluation": {"early_stopping_patience": 2, "samples": 0, "forgetting": False},
    })
    watch = metrics["overfitting"]
    assert watch["warning"] is True and "validation loss rose" in watch["message"]
    assert watch["final_train_loss"] < watch["train_loss_at_best"]
    assert watch["early_stopped_at_step"] < 80 and metrics["train"]["steps"] < 80
    assert watch["early_stopped_at_step"] == watch["best_step"] + 2 * 5  # patience 2 evaluations, every 5 steps
    assert watch["restored_best"] is True
    # the restored (best) weights score better than the last evaluated ones would
    assert metrics["after"]["loss"]["loss"] < watch["final_eval_loss"]


@pytest.mark.slow
def test_training_hard_on_unrelated_data_flags_forgetting(run_recipe: Any, write_recipe: Any, tmp_path: Path) -> None:
    write_jsonl(reverse_rows(64, seed=5), tmp_path / "d.jsonl")
    metrics = _run(run_recipe, write_recipe, {
        "model": {**tiny_model_recipe_table(), "pretrain_steps": 150},
        "data": {"format": "alpaca", "train": "d.jsonl", "eval": 0.25, "max_length": 64},
        "method": {"use": "full"}, "objective": {"use": "sft"},
        "train": {"max_steps": 40, "lr": 1e-2, "batch_size": 16, "scheduler": "constant"},
        "evaluators": [{"use": "loss"}],
        "evaluation": {"samples": 0, "forgetting_threshold": 0.1, "gate": {"forgetting": "<= 10%"}},
    })
    forgetting = metrics["forgetting"]
    assert "generated general text" in forgetting["text"]
    assert forgetting["after_perplexity"] > forgetting["before_perplexity"] * 1.1
    assert forgetting["flagged"] is True
    assert metrics["gate"]["checks"][0]["passed"] is False
