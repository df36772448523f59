"""The mlflow logger: a tiny run tracked in the default local store, read back with ``mlflow.search_runs``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ftx.testing import TINY_TEST_CONFIG


def tiny_recipe(folder: Path, loggers: str) -> Path:
    """A 4-step run of the test-sized model on 40 copy rows, held-out loss only, plus ``loggers``."""
    rows = [{"instruction": "Copy.", "input": f"{c} {d}", "output": f"{c} {d}"} for c in "abcd" for d in "abcdefghij"]
    (folder / "copy.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = ", ".join(f"{k} = {v}" for k, v in TINY_TEST_CONFIG.items())
    path = folder / "recipe.toml"
    path.write_text(
        f'[model]\nname = "builtin:tiny-llama"\nconfig = {{{cfg}}}\n'
        '[data]\nformat = "alpaca"\ntrain = "copy.jsonl"\neval = 0.2\n'
        '[method]\nuse = "full"\n[objective]\nuse = "sft"\n'
        '[train]\nmax_steps = 4\nbatch_size = 8\nlr = 1e-3\nlog_every = 2\neval_every = 2\n'
        '[evaluation]\nforgetting = false\nsamples = 0\n[[evaluators]]\nuse = "loss"\n' + loggers
    )
    return path


@pytest.mark.slow
def test_mlflow_run_is_read_back_with_search_runs(tmp_path, run_recipe):
    import mlflow
    from mlflow.tracking import MlflowClient

    recipe = tiny_recipe(tmp_path, '[[loggers]]\nuse = "mlflow"\nexperiment = "ftx-test"\ntags = {team = "iterate"}\n')
    metrics = run_recipe(recipe, output=tmp_path / "run")
    store = (tmp_path / "run" / "mlruns").as_uri()

    mlflow.set_tracking_uri(store)
    found = mlflow.search_runs(experiment_names=["ftx-test"])
    assert len(found) == 1
    row = found.iloc[0]
    assert row["status"] == "FINISHED" and row["tags.mlflow.runName"] == "run" and row["tags.team"] == "iterate"
    assert row["params.train.lr"] == "0.001" and row["params.method.use"] == "full"
    assert row["params.evaluators.0.use"] == "loss" and row["params.loggers.0.use"] == "mlflow"
    assert row["metrics.after.loss.loss"] == pytest.approx(metrics["after"]["loss"]["loss"])
    assert row["metrics.before.loss.loss"] == pytest.approx(metrics["before"]["loss"]["loss"])
    assert row["metrics.train.steps"] == 4.0

    client = MlflowClient(store)
    assert [m.step for m in client.get_metric_history(row["run_id"], "eval_loss")] == [2, 4]
    assert [m.step for m in client.get_metric_history(row["run_id"], "loss")][:2] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(row["run_id"])}
    assert {"metrics.json", "report.html", "recipe.lock.toml", "model"} <= artifacts
    assert "model/config.json" in {a.path for a in client.list_artifacts(row["run_id"], "model")}
