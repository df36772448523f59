"""``ftx runs`` and ``ftx compare`` on run folders (written here as a finished, a failed and an unfinished run)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from ftx.api import toml_text as dumps
from ftx.cli import main


def make_run(folder: Path, lr: float, *, exact: float | None = None, loss: float = 1.0, error: str | None = None,
             seconds: float = 12.0) -> Path:
    folder.mkdir(parents=True)
    lock = {"model": {"name": "builtin:tiny-llama"}, "method": {"use": "full"}, "objective": {"use": "sft"},
            "train": {"lr": lr, "batch_size": 32, "seed": 42}, "evaluators": [{"use": "exact-match"}, {"use": "loss"}],
            "ftx": {"version": "0.1.0", "created": "2026-01-01T00:00:00Z", "components": {"method:full": "ftx-full 0.1.0"}}}
    (folder / "recipe.lock.toml").write_text(dumps(lock))
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-2" / "recipe.lock.toml").write_text("")  # not a run of its own
    if error:
        (folder / "error.txt").write_text(error)
    elif exact is not None:
        metrics = {"before": {"exact-match": {"exact_match": 0.0}, "loss": {"loss": 5.0, "perplexity": 148.4}},
                   "after": {"exact-match": {"exact_match": exact}, "loss": {"loss": loss, "perplexity": 2.7}},
                   "train": {"steps": 400.0, "seconds": seconds}, "data": {"train": 1800}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_runs_lists_every_run_folder_with_status_and_after_metrics(tmp_path):
    make_run(tmp_path / "a", 1e-3, exact=1.0, loss=0.01, seconds=61.4)
    make_run(tmp_path / "sweep" / "trial-0", 3e-4, exact=0.5)
    make_run(tmp_path / "broken", 1e-3, error="Traceback ...\nRuntimeError: boom\n")
    make_run(tmp_path / "sweep" / "trial-1", 1e-4, error="Traceback ...\noptuna.exceptions.TrialPruned: worse\n")
    make_run(tmp_path / "running", 1e-3)
    (tmp_path / "notes").mkdir()

    result = CliRunner().invoke(main, ["runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["run", "status", "method", "objective", "after", "seconds"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"a", "broken", "running", "sweep/trial-0", "sweep/trial-1"}
    assert rows["a"] == ["a", "complete", "full", "sft", "exact-match=1", "loss=0.01", "61"]
    assert rows["sweep/trial-0"][1] == "complete" and "exact-match=0.5" in rows["sweep/trial-0"]
    assert rows["broken"][1:] == ["failed", "full", "sft", "-", "-"]
    assert rows["sweep/trial-1"][1] == "pruned" and rows["running"][1] == "incomplete"

    listed = json.loads(CliRunner().invoke(main, ["runs", str(tmp_path), "--json"]).output)
    assert {r["run"]: r["metrics"] for r in listed}["a"] == {"exact-match": 1.0, "loss": 0.01}
    empty = CliRunner().invoke(main, ["runs", str(tmp_path / "notes")])
    assert empty.exit_code == 0 and "no run folders" in empty.output


def test_compare_marks_differing_recipe_keys_and_shows_metric_deltas(tmp_path):
    a = make_run(tmp_path / "a", 1e-3, exact=1.0, loss=0.01)
    b = make_run(tmp_path / "b", 3e-4, exact=0.75, loss=0.02)
    result = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "1 recipe keys differ (marked *)" in result.output
    assert [line.split() for line in lines if "train.lr" in line] == [["*", "train.lr", "0.001", "0.0003"]]
    assert [line.split() for line in lines if "train.batch_size" in line] == [["train.batch_size", "32", "32"]]
    assert ["*", "after.exact-match.exact_match", "1", "0.75", "-0.25"] in [line.split() for line in lines]
    assert ["before.loss.loss", "5", "5", "0"] in [line.split() for line in lines]
    assert "components.method:full" in result.output  # which plugin version trained each

    only = CliRunner().invoke(main, ["compare", str(a), str(b), "--only-diff"])
    assert "train.batch_size" not in only.output and "train.lr" in only.output and "equal keys not shown" in only.output
    data = json.loads(CliRunner().invoke(main, ["compare", str(a), str(b), "--json"]).output)
    assert [r["key"] for r in data["recipe"] if r["differs"]] == ["train.lr"]

    missing = CliRunner().invoke(main, ["compare", str(a), str(tmp_path)])
    assert missing.exit_code == 2 and "is not a run folder (no recipe.lock.toml)" in missing.output
