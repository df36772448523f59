"""The wandb logger: a tiny run tracked in wandb's offline mode, its run file read back record by record."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ftx.testing import TINY_TEST_CONFIG

BLOCK = 32768
"""The ``.wandb`` file is a LevelDB-style log: 32 KiB blocks of chunks, each with a 7-byte header."""


def wandb_records(path: Path) -> Iterator[Any]:
    """Every protobuf ``Record`` in a ``run-<id>.wandb`` file (wandb ships no public reader for it)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B", "not a wandb run file"
    pos, pending = 7, b""
    while pos + 7 <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item: Any) -> str:
    """An item's key: plain, or nested (``a/b``)."""
    return item.key or "/".join(item.nested_key)


def read_run(run_dir: Path) -> dict[str, Any]:
    """History rows, the final summary, the config and the run's name from the offline run under ``run_dir``."""
    found = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(found) == 1, found
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    config: dict[str, Any] = {}
    name = None
    for record in wandb_records(found[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "run":
            name = record.run.display_name
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
    return {"history": history, "summary": summary, "config": config, "name": name, "folder": found[0].parent}


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb offline, silent, without error reports, its own folders in tmp_path, and no route to any server."""
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false",
                       "WANDB_DISABLE_GIT": "true", "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
                       "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
                       "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


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
        '[train]\nmax_steps = 4\nbatch_size = 8\nlr = 1e-3\nlog_every = 2\neval_every = 2\nthreads = 1\n'
        '[evaluation]\nforgetting = false\nsamples = 0\n[[evaluators]]\nuse = "loss"\n' + loggers
    )
    return path


@pytest.mark.slow
def test_offline_run_files_hold_the_runs_metrics(tmp_path, run_recipe, offline_wandb):
    recipe = tiny_recipe(tmp_path, '[[loggers]]\nuse = "wandb"\nproject = "ftx-test"\ntags = ["iterate"]\n'
                                   'system_metrics = false\n')
    metrics = run_recipe(recipe, output=tmp_path / "run")
    found = read_run(tmp_path / "run")

    assert found["name"] == "run"
    assert found["config"]["train.lr"] == 0.001 and found["config"]["method.use"] == "full"
    assert found["config"]["evaluators.0.use"] == "loss" and found["config"]["loggers.0.use"] == "wandb"
    losses = [(row["_step"], row["loss"]) for row in found["history"] if "loss" in row]
    assert [step for step, _ in losses][:2] == [1, 2]
    assert [row["_step"] for row in found["history"] if "eval_loss" in row] == [2, 4]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    logged = {h["step"]: h["loss"] for h in (history if isinstance(history, list) else history["history"]) if "loss" in h}
    assert all(loss == pytest.approx(logged[step]) for step, loss in losses if step in logged)
    summary = found["summary"]
    assert summary["after.loss.loss"] == pytest.approx(metrics["after"]["loss"]["loss"])
    assert summary["before.loss.loss"] == pytest.approx(metrics["before"]["loss"]["loss"])
    assert summary["train.steps"] == 4.0
    files = found["folder"] / "files"
    assert json.loads((files / "metrics.json").read_text())["after"] == metrics["after"]
    assert (files / "recipe.lock.toml").is_file()


def test_options_are_checked_without_importing_wandb():
    import subprocess
    import sys

    probe = (
        "import sys\nfrom ftx_logger_wandb import WandbOptions\n"
        "WandbOptions.model_validate({'project': 'p', 'mode': 'offline', 'tags': ['a']})\n"
        "try:\n    WandbOptions.model_validate({'mode': 'cloud'})\nexcept Exception as exc:\n    print('refused')\n"
        "print('wandb' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["refused", "False"]
