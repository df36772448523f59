"""ftx plugin: the ``mlflow`` logger. Tracking code lives in :mod:`ftx_logger_mlflow.tracker`.

This module registers the logger's name and options only; MLflow is imported when a run whose
recipe has ``[[loggers]] use = "mlflow"`` starts.
"""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import LoggerSpec, Options, hookimpl
from pydantic import Field


class MlflowOptions(Options):
    """``[[loggers]] use = "mlflow"``."""

    tracking_uri: str | None = Field(
        None, description="where runs are tracked: an MLflow URI (http://..., sqlite:///..., file:///...); "
        "default: a local file store in the run folder (run_dir/mlruns)"
    )
    experiment: str = Field("ftx", description="MLflow experiment name (created when missing)")
    run_name: str | None = Field(None, description="MLflow run name; default: the run folder's name")
    log_model: bool = Field(True, description="upload the saved model folder as an artifact (model/)")
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags set on the MLflow run")


@hookimpl
def ftx_register_loggers(register: Callable[[LoggerSpec], None]) -> None:
    register(LoggerSpec(
        name="mlflow",
        summary="MLflow tracking: recipe as params, training curves, before/after metrics, report and model.",
        factory="ftx_logger_mlflow.tracker:MlflowLogger",
        options=MlflowOptions,
    ))
