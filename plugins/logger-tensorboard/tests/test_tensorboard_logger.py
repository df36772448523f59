"""The tensorboard logger: a tiny run's event files, read back with TensorBoard's own event reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ftx.testing import TINY_TEST_CONFIG
from ftx_logger_tensorboard.writer import metric_tag


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


def test_metric_tags():
    assert metric_tag("eval_loss") == "eval/loss" and metric_tag("loss") == "train/loss" and metric_tag("lr") == "train/lr"


@pytest.mark.slow
def test_tensorboard_events_are_read_back_with_the_event_accumulator(tmp_path, run_recipe):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = run_recipe(tiny_recipe(tmp_path, '[[loggers]]\nuse = "tensorboard"\n'), output=tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/loss", "before/loss/loss", "after/loss/loss", "run/steps"} <= scalars
    assert [e.step for e in events.Scalars("eval/loss")] == [2, 4]
    [after] = events.Scalars("after/loss/loss")
    assert after.step == 4 and after.value == pytest.approx(metrics["after"]["loss"]["loss"], rel=1e-6)
    [before] = events.Scalars("before/loss/loss")
    assert before.step == 0 and before.value == pytest.approx(metrics["before"]["loss"]["loss"], rel=1e-6)
    assert "recipe" in " ".join(events.Tags()["tensors"])  # the recipe as a text summary
