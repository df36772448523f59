"""GGUF files as a model source: path resolution, the conversion cache, and one-line errors (no real model needed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from ftx.errors import RunError
from ftx.models import gguf as gguf_module
from ftx.models.gguf import MARKER, file_sha256, gguf_folder, is_gguf
from ftx.models.loading import load_model, load_tokenizer, resolve_model_path
from ftx.recipe.schema import ModelSection
from ftx.testing import tiny_recipe


def _write_gguf(path: Path, architecture: str) -> Path:
    """A minimal, valid GGUF file of ``architecture`` (one small float tensor, no tokenizer)."""
    gguf = pytest.importorskip("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_is_gguf():
    assert is_gguf("models/SmolLM2.Q4_1.gguf") and is_gguf("/abs/X.GGUF")
    assert not is_gguf("HuggingFaceTB/SmolLM2-135M-Instruct") and not is_gguf("builtin:tiny-llama") and not is_gguf(None)


def test_recipe_reads_a_gguf_path_relative_to_its_folder(plugin_manager, write_recipe, tiny_dataset):
    data = tiny_dataset("alpaca")
    table = tiny_recipe(data, model={"name": "weights/model.Q4_1.gguf"})
    path = write_recipe(table)
    recipe = plugin_manager.load_recipe(path)
    assert recipe.model.name == str(path.parent.resolve() / "weights" / "model.Q4_1.gguf")


def test_missing_file_is_one_line_naming_the_path(ftx_home, tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(RunError) as caught:
        resolve_model_path(ModelSection(name=str(missing)))
    message = str(caught.value)
    assert str(missing) in message and "not found" in message and "\n" not in message


def test_gguf_package_absent_gives_the_install_command(ftx_home, tmp_path, monkeypatch):
    file = tmp_path / "model.gguf"
    file.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(RunError, match=r"needs the gguf package; install it with: pip install 'gguf>=0\.10'"):
        gguf_folder(file)


def test_unreadable_architecture_names_the_file_and_what_to_do(ftx_home, tmp_path):
    file = _write_gguf(tmp_path / "odd.gguf", "fooarch")
    with pytest.raises(RunError) as caught:
        gguf_folder(file)
    message = str(caught.value)
    assert str(file) in message and "fooarch" in message and "llama" in message and "hub id" in message
    assert not list((ftx_home / "gguf").glob("odd-*")), "a failed conversion must leave no folder behind"


def test_hash_is_remembered_per_size_and_mtime(ftx_home, tmp_path):
    file = tmp_path / "model.gguf"
    file.write_bytes(b"weights v1")
    first = file_sha256(file)
    sidecar = ftx_home / "gguf" / "hashes.json"
    known = json.loads(sidecar.read_text())
    stamp = next(k for k in known if k.startswith(str(file.resolve())))
    known[stamp] = "remembered"
    sidecar.write_text(json.dumps(known))
    assert file_sha256(file) == "remembered"  # not read again
    file.write_bytes(b"weights v2, a different size")
    assert file_sha256(file) not in (first, "remembered")


def test_conversion_happens_once_and_lands_atomically(ftx_home, tmp_path, monkeypatch):
    file = tmp_path / "model.gguf"
    file.write_bytes(b"pretend weights")
    calls = []

    def fake_convert(path: Path, out: Path) -> dict:
        calls.append(out)
        assert not out.name.startswith("model-"), "conversion writes into a temporary folder first"
        (out / "config.json").write_text("{}")
        return {"architecture": "Fake"}

    monkeypatch.setattr(gguf_module, "convert", fake_convert)
    folder = gguf_folder(file)
    assert folder == gguf_folder(file) and len(calls) == 1
    assert folder.name == f"model-{file_sha256(file)[:16]}" and (folder / "config.json").is_file()
    info = json.loads((folder / MARKER).read_text())
    assert info["source"] == str(file.resolve()) and info["sha256"] == file_sha256(file)
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".model")] == []


def test_failed_conversion_leaves_nothing(ftx_home, tmp_path, monkeypatch):
    file = tmp_path / "broken.gguf"
    file.write_bytes(b"x")

    def boom(path: Path, out: Path) -> dict:
        (out / "half.safetensors").write_text("half")
        raise RunError("cannot read GGUF file")

    monkeypatch.setattr(gguf_module, "convert", boom)
    with pytest.raises(RunError):
        gguf_folder(file)
    assert not [p for p in (ftx_home / "gguf").iterdir() if "broken" in p.name]


def test_hub_ids_and_folders_are_unchanged(tiny_model_path):
    """The path a hub id takes: the name goes to from_pretrained as it is (tried here with a local folder)."""
    section = ModelSection(name=str(tiny_model_path), dtype="float32")
    assert resolve_model_path(section) == str(tiny_model_path)
    assert resolve_model_path(ModelSection(name="HuggingFaceTB/SmolLM2-135M-Instruct")) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    tokenizer = load_tokenizer(section, str(tiny_model_path))
    model = load_model(section, str(tiny_model_path), head="causal-lm", device="cpu", tokenizer=tokenizer, extra={})
    assert model.config.model_type == "llama" and tokenizer.chat_template
