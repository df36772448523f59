"""The MLflow logger: one MLflow run per ftx run, through ``MlflowClient`` (no global active run).

* params: the resolved recipe flattened to dotted keys (``train.lr``, ``method.use``, ``evaluators.0.use``);
* metrics: every training log at its step (``loss``, ``eval_loss``, ``lr``, ...), then
  ``before.<evaluator>.<figure>`` and ``after.<evaluator>.<figure>`` and ``train.<figure>``;
* artifacts: ``metrics.json``, ``report.html``, ``curves.png``, ``recipe.lock.toml`` and the
  ``model/`` folder (``log_model = false`` skips it);
* status: FINISHED, FAILED, or KILLED for an interrupted run.

The default store is a local file store in the run folder (``run_dir/mlruns``): read it with
``mlflow ui --backend-store-uri <run_dir>/mlruns`` or ``mlflow.search_runs``. MLflow 3 keeps that
store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which is set for file URIs only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ftx.api import CURVES_FILE, HISTORY_FILE, LOCK_FILE, METRICS_FILE, MODEL_DIR, REPORT_FILE
from ftx_hookspecs import RunContext

ARTIFACTS = (METRICS_FILE, REPORT_FILE, CURVES_FILE, LOCK_FILE, HISTORY_FILE)
PARAM_LIMIT = 500
"""Longest parameter value sent (longer ones, e.g. a chat template, are cut and marked)."""
BATCH = 100
"""MLflow accepts at most 100 params per ``log_batch``."""


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables and arrays as dotted keys: ``{"a": {"b": [1]}}`` → ``{"a.b.0": 1}``."""
    if isinstance(value, Mapping):
        items: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list) and value and all(isinstance(v, (Mapping, list)) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return out


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - 3] + "..."


def _numbers(flat: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def resolve_uri(tracking_uri: str | None, run_dir: Path) -> str:
    """The configured URI, or a file store in the run folder; file stores are allowed explicitly."""
    uri = tracking_uri or (Path(run_dir) / "mlruns").resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


class MlflowLogger:
    """Tracks one ftx run as one MLflow run."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.client: Any = None
        self.run_id: str | None = None
        self.uri: str | None = None
        self.last_step = 0

    def start(self, run: RunContext) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(self.options.tracking_uri, Path(run.run_dir))
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = self.client.get_experiment_by_name(self.options.experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(self.options.experiment))
        tags = {"ftx.run_dir": str(run.run_dir), **self.options.tags}
        created = self.client.create_run(experiment_id, run_name=self.options.run_name or Path(run.run_dir).name,
                                         tags=tags)
        self.run_id = created.info.run_id
        params = [Param(k, _param_text(v)) for k, v in sorted(flatten(dict(run.recipe)).items()) if v is not None]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + BATCH])
        run.echo(f"mlflow: run {self.run_id} in experiment {self.options.experiment!r} at {self.uri}")

    def _log(self, figures: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in figures.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_metrics(self, run: RunContext, step: int, metrics: Mapping[str, float]) -> None:
        self.last_step = max(self.last_step, int(step))
        self._log(_numbers(metrics), int(step))

    def end(self, run: RunContext, metrics: Mapping[str, Any] | None, error: BaseException | None) -> None:
        if self.client is None or self.run_id is None:
            return
        status = "FINISHED"
        try:
            if metrics:
                summary = {k: v for k, v in metrics.items() if k in ("before", "after", "train")}
                self._log(_numbers(flatten(summary)), self.last_step)
                run_dir = Path(run.run_dir)
                for name in ARTIFACTS:
                    if (run_dir / name).is_file():
                        self.client.log_artifact(self.run_id, str(run_dir / name))
                if self.options.log_model and (run_dir / MODEL_DIR).is_dir():
                    self.client.log_artifacts(self.run_id, str(run_dir / MODEL_DIR), artifact_path="model")
            if error is not None:
                status = "KILLED" if type(error).__name__ in ("RunInterrupted", "KeyboardInterrupt") else "FAILED"
                self.client.set_tag(self.run_id, "ftx.error", f"{type(error).__name__}: {error}"[:PARAM_LIMIT])
        except BaseException:
            status = "FAILED"
            raise
        finally:
            self.client.set_terminated(self.run_id, status)
