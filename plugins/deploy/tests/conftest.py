"""Shared fixtures of the ftx-deploy tests: one run folder whose model has learned to stop, and a served model.

The run trains once per session (``stopping_run``) and every deploy test module reuses it; ``served``
runs ``ftx serve`` in a subprocess on a free local port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "recipes" / "quickstart.toml"
STOPPING_OVERRIDES: tuple[str, ...] = (
    "model.config={hidden_size=64,intermediate_size=128,num_hidden_layers=2,num_attention_heads=4,num_key_value_heads=2}",
    "train.max_steps=60", "train.lr=3e-3", "train.batch_size=16", "train.log_every=60",
    "data.limit=300", "data.max_length=40",
    "evaluators=[]", "evaluation.forgetting=false", "evaluation.samples=0",
)
"""The quickstart, test-sized: 60 steps teach the tiny model to answer and end its turn with <|im_end|>."""


def train_run(folder: Path, overrides: Sequence[str] = ()) -> Path:
    """A finished quickstart run in ``folder`` (trained with ``ftx run`` on the first call, reused after)."""
    from click.testing import CliRunner
    from ftx.cli import main

    folder = Path(folder)
    if (folder / "metrics.json").is_file() and (folder / "model").is_dir():
        return folder
    args = ["run", str(QUICKSTART), "--output", str(folder), "--overwrite"]
    for override in (*STOPPING_OVERRIDES, *overrides):
        args += ["--set", override]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return folder


@pytest.fixture(scope="session")
def stopping_run(ftx_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quickstart run whose model answers and ends its turn with <|im_end|>."""
    return train_run(tmp_path_factory.getbasetemp() / "deploy-stopping-run")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(target: Path, *args: str, timeout: float = 180.0, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``ftx serve TARGET`` on 127.0.0.1 and a free port; yield its base URL; always stop it."""
    port = free_port()
    command = [sys.executable, "-m", "ftx.cli", "serve", str(target), "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", *args]
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - a file, not a pipe: a chatty server never blocks
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"ftx serve exited with {proc.returncode} before it was ready:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ftx serve was not ready within {timeout:.0f}s")
            time.sleep(0.3)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def serve_model():
    """``with serve_model(target, *args) as base_url``: ``ftx serve`` in a subprocess (see :func:`served`)."""
    return served


@pytest.fixture(scope="session")
def train_quickstart():
    """``train_quickstart(folder, overrides)``: a test-sized quickstart run (see :func:`train_run`)."""
    return train_run
