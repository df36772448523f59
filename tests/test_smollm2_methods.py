"""QLoRA, then DPO, on the real SmolLM2-135M-Instruct, each exported merged and the last one served.

One chain, as a user would run it on the routing task (a customer message -> one of six team names,
the system prompt of recipes/smollm2-lora.toml): QLoRA (4-bit NF4 base on the CPU) teaches the base
to answer with a team's name; DPO on that model's export, with pairs built from the same rows (chosen:
the right team, rejected: a wrong one), makes it prefer the right team; ``ftx serve`` of the DPO
export answers the official openai client with a team's name. Each stage is short (a few steps of 4
examples, one thread) and is asserted on a held-out figure that must move. Every test skips with a
reason where ../shared/models is absent, and all are outside the default run (``-m long``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.long]

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO.parent / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
HELD_OUT_MESSAGE = "My parcel #55555 has not arrived."
"""A routing message in neither split (the generated rows carry an opener and a closer)."""


@pytest.fixture(scope="module")
def smollm2_folder(ftx_home: Path) -> Path:
    """The GGUF file converted to a plain folder by ftx (once, then from $FTX_HOME's cache)."""
    if not GGUF.is_file():
        pytest.skip(f"SmolLM2 GGUF not available at {GGUF} (only in ftx's development checkout)")
    from ftx.models.loading import resolve_model_path
    from ftx.recipe.schema import ModelSection

    return Path(resolve_model_path(ModelSection(name=str(GGUF))))


def preference_rows(rows: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """Routing chat rows as preference pairs: the prompt with the system turn, the right team chosen, a wrong
    one rejected (a different wrong team from row to row)."""
    from ftx.demo_data import ROUTING_TEAMS

    teams = list(ROUTING_TEAMS)
    pairs = []
    for i, row in enumerate(rows):
        user, team = row["messages"][0]["content"], row["messages"][1]["content"]
        wrong = teams[(teams.index(team) + 1 + i % (len(teams) - 1)) % len(teams)]
        pairs.append({"prompt": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                      "chosen": team, "rejected": wrong})
    return pairs


def ftx(*args: str) -> str:
    """Run an ``ftx`` command in-process; its output, after asserting it succeeded."""
    from click.testing import CliRunner
    from ftx.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


def train_and_export(folder: Path, tables: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """``ftx run`` the recipe ``tables`` into ``folder/run``, then ``ftx export`` it merged into ``folder/merged``
    (smoke test on 2 held-out prompts); the run's metrics and the export's folder."""
    from ftx.testing import recipe_text

    recipe = folder / "recipe.toml"
    recipe.write_text(recipe_text(tables), encoding="utf-8")
    run_dir, merged = folder / "run", folder / "merged"
    ftx("run", str(recipe), "--output", str(run_dir), "--overwrite")
    ftx("export", str(run_dir), "--to", str(merged), "--smoke-prompts", "2")
    return json.loads((run_dir / "metrics.json").read_text()), merged


def short_run(steps: int, **tables: Any) -> dict[str, Any]:
    """A recipe of ``steps`` steps of 4 examples on one thread, without report samples or forgetting check."""
    return {
        "train": {"max_steps": steps, "batch_size": 4, "lr": 2e-3, "log_every": 1, "threads": 1, "seed": 42},
        "evaluation": {"samples": 0, "forgetting": False},
        **tables,
    }


@pytest.fixture(scope="module")
def routing_rows_48() -> list[dict[str, Any]]:
    """48 routing rows; with ``eval = 0.25`` both stages hold out the same 12."""
    from ftx.demo_data import routing_rows

    return routing_rows(48, seed=3)


@pytest.fixture(scope="module")
def qlora_stage(smollm2_folder, routing_rows_48, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """QLoRA on the routing rows (4-bit NF4 base, adapters r=8), 8 steps of 4; its metrics and merged export."""
    from ftx.demo_data import ROUTING_INSTRUCTION, write_jsonl

    folder = tmp_path_factory.mktemp("smollm2-qlora")
    data = write_jsonl(routing_rows_48, folder / "routing.jsonl")
    tables = short_run(
        8,
        model={"name": str(GGUF), "dtype": "float32"},
        data={"format": "messages", "train": str(data), "eval": 0.25, "max_length": 128,
              "system": ROUTING_INSTRUCTION},
        method={"use": "qlora", "quant_type": "nf4", "r": 8, "alpha": 16, "dropout": 0.0,
                "target_modules": "all-linear", "gradient_checkpointing": False},
        objective={"use": "sft"},
        evaluators=[{"use": "exact-match", "max_new_tokens": 6}],
    )
    return train_and_export(folder, tables)


@pytest.fixture(scope="module")
def dpo_stage(qlora_stage, routing_rows_48, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """DPO (LoRA adapters, the reference is the QLoRA export itself) on pairs from the same rows, 6 steps of 4."""
    from ftx.demo_data import ROUTING_INSTRUCTION, write_jsonl

    folder = tmp_path_factory.mktemp("smollm2-dpo")
    data = write_jsonl(preference_rows(routing_rows_48, ROUTING_INSTRUCTION), folder / "pairs.jsonl")
    tables = short_run(
        6,
        model={"name": str(qlora_stage[1]), "dtype": "float32"},
        data={"format": "preference", "train": str(data), "eval": 0.25, "max_length": 128},
        method={"use": "lora", "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        objective={"use": "dpo", "beta": 0.1},
        evaluators=[{"use": "preference"}],
    )
    return train_and_export(folder, tables)


def assert_plain_export_routes(merged: Path) -> str:
    """The export loads with plain transformers (no adapter, no 4-bit layers), its smoke test saw every reply stop
    at <|im_end|>, and its greedy reply to a message it never saw ends with <|im_end|> and is a team's name."""
    import torch
    from ftx.demo_data import ROUTING_INSTRUCTION, ROUTING_TEAMS
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert not (merged / "adapter_config.json").exists()
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())
    exported = json.loads((merged / "ftx_export.json").read_text())
    assert exported["end_of_turn"]["token"] == "<|im_end|>"
    assert exported["smoke_test"]["stopped"] == exported["smoke_test"]["replies"] == 2

    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    assert im_end in ([eos] if isinstance(eos, int) else eos)
    batch = tokenizer.apply_chat_template(
        [{"role": "system", "content": ROUTING_INSTRUCTION}, {"role": "user", "content": HELD_OUT_MESSAGE}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=16, do_sample=False)[0, batch["input_ids"].shape[1]:].tolist()
    reply = tokenizer.decode(ids[:-1]).strip()
    assert ids[-1] == im_end and reply in ROUTING_TEAMS, tokenizer.decode(ids)
    return reply


def test_qlora_on_smollm2_learns_to_route_and_exports_a_plain_model(qlora_stage):
    metrics, merged = qlora_stage
    before, after = metrics["before"]["exact-match"], metrics["after"]["exact-match"]
    assert after["exact_match"] > before["exact_match"], (before, after)
    weights = metrics["figures"]["weight_bytes"]
    assert weights.get("int4", 0) > 0  # the base really trained in 4 bits
    assert_plain_export_routes(merged)


def test_dpo_after_qlora_prefers_the_right_team_and_exports_a_plain_model(dpo_stage):
    metrics, merged = dpo_stage
    before, after = metrics["before"]["preference"], metrics["after"]["preference"]
    assert after["margin"] > before["margin"] + 0.5, (before, after)
    assert after["accuracy"] > before["accuracy"], (before, after)
    assert_plain_export_routes(merged)


def test_ftx_serve_of_the_dpo_export_answers_the_openai_client_with_a_team(dpo_stage, tmp_path):
    openai = pytest.importorskip("openai")
    from ftx.demo_data import ROUTING_INSTRUCTION, ROUTING_TEAMS

    merged = dpo_stage[1]
    with served(merged, tmp_path / "serve.log") as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)
        assert [m.id for m in client.models.list()] == [merged.name]
        answer = client.chat.completions.create(
            model=merged.name, temperature=0, max_tokens=16,
            messages=[{"role": "system", "content": ROUTING_INSTRUCTION},
                      {"role": "user", "content": HELD_OUT_MESSAGE}])
    assert answer.choices[0].message.content.strip() in ROUTING_TEAMS, answer
    assert answer.choices[0].finish_reason == "stop"  # ended at <|im_end|>, not at max_tokens


@contextmanager
def served(target: Path, log_path: Path, timeout: float = 300.0) -> Iterator[str]:
    """``ftx serve TARGET`` on 127.0.0.1 and a free port in a subprocess (one torch thread), as
    plugins/deploy/tests does; yields its /v1 base URL and always stops it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "ftx.cli", "serve", str(target), "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    with open(log_path, "w+", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"ftx serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ftx serve was not ready within {timeout:.0f}s")
                time.sleep(0.3)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
