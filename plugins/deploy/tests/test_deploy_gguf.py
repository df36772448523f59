"""``ftx export --format gguf``: one GGUF file and a Modelfile, read back and checked before they are kept.

The session's test-sized quickstart run (a Llama with a byte-level BPE tokenizer and ChatML) is
exported; the file is then loaded independently with transformers' GGUF reader and must answer like
a plain Hugging Face export of the same run. A writer bug (the rotary row order left out) and a file
cut short must each be refused with nothing left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from ftx.cli import main

pytest.importorskip("gguf")


def _export(*args: str) -> object:
    return CliRunner().invoke(main, ["export", *args])


def _greedy(model, tokenizer, prompts, eos_ids, max_new_tokens=24):
    from ftx_deploy.smoke import generate_greedy

    return generate_greedy(model, tokenizer, prompts, max_new_tokens, eos_ids)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def hf_export(stopping_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "hf"
    result = _export(str(stopping_run), "--to", str(out), "--smoke-prompts", "2")
    assert result.exit_code == 0, result.output
    return out


def test_interleaving_is_the_inverse_of_what_gguf_readers_undo():
    from ftx_deploy.gguf_writer import interleave_heads
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weight = np.arange(8 * 6 * 3, dtype=np.float32).reshape(8 * 6, 3)  # 6 heads of 8 rows
    stored = interleave_heads(weight, 6)
    assert not np.array_equal(stored, weight)
    back = LlamaTensorProcessor({"num_attention_heads": 6, "num_key_value_heads": 6})._reverse_permute_weights(stored, 6, 6)
    assert np.array_equal(back, weight)


def test_an_architecture_gguf_cannot_describe_is_refused_by_name():
    from ftx_deploy.gguf_writer import GGUFExportError, model_shape

    with pytest.raises(GGUFExportError, match="'gpt2'.*convert_hf_to_gguf"):
        model_shape({"model_type": "gpt2"})
    with pytest.raises(GGUFExportError, match="rope scaling 'llama3'"):
        model_shape({"model_type": "llama", "rope_parameters": {"rope_type": "llama3"}, "num_attention_heads": 2,
                     "hidden_size": 8})


@pytest.mark.slow
def test_f16_file_reads_back_and_answers_like_the_hf_export(stopping_run, hf_export, tmp_path):
    import torch
    from ftx_deploy.gguf_check import load_gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "gguf"
    result = _export(str(stopping_run), "--to", str(out), "--format", "gguf", "--smoke-prompts", "4")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "ftx_export.json", "gguf.f16.gguf"]
    info = json.loads((out / "ftx_export.json").read_text())
    assert info["mode"] == "gguf-f16" and info["gguf"]["check"]["identical"] == info["gguf"]["check"]["replies"] == 6
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./gguf.f16.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile

    # independently of the export's own check: the file's replies equal the Hugging Face export's
    plain = AutoModelForCausalLM.from_pretrained(hf_export, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(hf_export)
    model, gguf_tok = load_gguf(out / "gguf.f16.gguf")
    prompts = [[{"role": "user", "content": q}] for q in ("Route: my card was charged twice", "hello", "What is 2+2?")]
    eos = info["smoke_test"]["eos_token_id"]
    assert _greedy(model, gguf_tok, prompts, eos) == _greedy(plain, tok, prompts, eos)
    assert gguf_tok.convert_tokens_to_ids("<|im_end|>") in eos


@pytest.mark.slow
def test_q8_0_is_about_half_the_size_and_within_its_tolerance(stopping_run, tmp_path):
    out = tmp_path / "q8"
    result = _export(str(stopping_run), "--to", str(out), "--format", "gguf", "--quant", "q8_0", "--smoke-prompts", "4")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "ftx_export.json").read_text())["gguf"]
    assert info["quant"] == "q8_0" and info["tensors"]["q8_0"] > 0
    assert info["check"]["agreement"] >= 0.75 and info["check"]["stopped"] == info["check"]["replies"]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["key rows not interleaved", "file cut short"])
def test_a_faulty_write_is_refused_and_removed(stopping_run, tmp_path, monkeypatch, fault):
    import ftx_deploy.gguf_writer as writer

    if fault == "key rows not interleaved":  # a layout bug: the reader then scrambles the keys' rotary pairs
        real_interleave = writer.interleave_heads
        monkeypatch.setattr(writer, "interleave_heads",
                            lambda weight, heads: weight if weight.shape[0] < weight.shape[1] else real_interleave(weight, heads))
    else:
        real = writer.write_gguf

        def cut_short(folder, out, **kwargs):
            info = real(folder, out, **kwargs)
            with open(out, "r+b") as handle:
                handle.truncate(out.stat().st_size // 2)
            return info

        monkeypatch.setattr(writer, "write_gguf", cut_short)
    out = tmp_path / "bad"
    result = _export(str(stopping_run), "--to", str(out), "--format", "gguf", "--smoke-prompts", "4")
    assert result.exit_code != 0
    expected = "logits differ" if fault.startswith("key") else "does not load back"
    assert expected in result.output and "Nothing was exported" in result.output
    assert not out.exists() and _leftovers(tmp_path) == []


def test_gguf_requests_that_cannot_be_checked_are_refused_before_writing(stopping_run, tmp_path):
    out = tmp_path / "x"
    result = _export(str(stopping_run), "--to", str(out), "--format", "gguf", "--no-smoke-test")
    assert result.exit_code == 2 and "drop --no-smoke-test" in result.output
    result = _export(str(stopping_run), "--to", str(out), "--format", "gguf", "--adapter")
    assert result.exit_code == 2
    assert not out.exists() and _leftovers(tmp_path) == []
