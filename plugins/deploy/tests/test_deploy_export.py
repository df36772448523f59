"""``ftx export``: a standalone folder that loads without ftx or peft, answers like the run, and stops.

One quickstart run (test-sized, trained once per session until it ends its turns) backs these
tests; failing cases are made from copies of it or from the untrained built-in model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ftx.cli import main

PLAIN_LOAD = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, prompts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(folder).eval()
tok = AutoTokenizer.from_pretrained(folder)
tok.padding_side = "left"
texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
with torch.no_grad():
    out = model.generate(**batch, max_new_tokens=32, do_sample=False)  # EOS ids: the folder's generation config
    logits = model(**batch).logits[:, -1, :]
new = out[:, batch["input_ids"].shape[1]:]
eos = set(model.generation_config.eos_token_id)
print(json.dumps({
    "replies": [tok.decode(row, skip_special_tokens=True).strip() for row in new],
    "stopped": [bool(eos & set(row.tolist())) for row in new],
    "logits": logits.tolist(),
    "modules": sorted({m.split(".")[0] for m in sys.modules} & {"ftx", "peft", "ftx_hookspecs", "trl"}),
}))
"""


@pytest.fixture(scope="session")
def eval_prompts(stopping_run):
    from ftx_deploy.smoke import eval_prompts as prompts

    found, refs, origin = prompts(stopping_run, 6, lambda _m: None)
    assert origin == "eval split" and len(found) == 6 and refs
    return found


def _export(*args: str) -> object:
    return CliRunner().invoke(main, ["export", *args], catch_exceptions=False)


def _fake_run(src: Path, dest: Path, model_dir: Path | None = None) -> Path:
    """A copy of a run folder, optionally with another model in model/."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoints"))
    if model_dir is not None:
        shutil.rmtree(dest / "model")
        shutil.copytree(model_dir, dest / "model")
    return dest


@pytest.mark.slow
def test_export_loads_without_ftx_or_peft_and_answers_like_the_run(stopping_run, eval_prompts, tmp_path):
    import torch
    from ftx.api import generate_replies
    from ftx_deploy.source import find_model, load_for_inference

    out = tmp_path / "export"
    result = _export(str(stopping_run), "--to", str(out))
    assert result.exit_code == 0, result.output
    assert "smoke test: 4 of 4 greedy replies (eval split) stopped at an EOS id, after " in result.output
    assert "tokens (cap 256: 2 x the longest trained answer (" in result.output  # the cap comes from the data
    smoke = json.loads((out / "ftx_export.json").read_text())["smoke_test"]
    assert smoke["stopped"] == smoke["replies"] == 4 and all(0 < g["tokens"] < 256 for g in smoke["generations"])
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
            "generation_config.json", "ftx_export.json"} <= files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    model, tokenizer = load_for_inference(find_model(stopping_run), device="cpu")
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert (out / "chat_template.jinja").read_text() == tokenizer.chat_template

    proc = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(out), json.dumps(eval_prompts)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plain["modules"] == []  # neither ftx nor peft was imported to load and run the export
    expected = generate_replies(model, tokenizer, eval_prompts, max_new_tokens=32)
    assert plain["replies"] == expected
    assert any(expected) and all(plain["stopped"])
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in eval_prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        logits = model(**batch).logits[:, -1, :]
    assert torch.allclose(torch.tensor(plain["logits"]), logits, atol=1e-5)


def test_export_refuses_a_non_empty_folder_unless_it_is_an_earlier_export(tiny_model_path, tmp_path):
    folder = Path(shutil.copytree(tiny_model_path, tmp_path / "model-folder"))  # refusals come before loading
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = _export(str(folder), "--to", str(target))
    assert result.exit_code == 2 and "is not empty; pass --overwrite" in result.output
    result = _export(str(folder), "--to", str(target), "--overwrite")
    assert result.exit_code == 2 and "not an ftx export (no ftx_export.json)" in result.output
    assert (target / "notes.txt").read_text() == "keep me"
    result = _export(str(folder), "--to", str(folder / "x"))
    assert result.exit_code == 2 and "overlaps the model being exported" in result.output
    result = _export(str(folder), "--to", str(tmp_path / "a"), "--adapter")
    assert result.exit_code == 2 and "holds a full model, not an adapter" in result.output
    result = _export(str(tmp_path / "missing"), "--to", str(tmp_path / "b"))
    assert result.exit_code == 1 and "does not exist" in result.output


@pytest.mark.slow
def test_an_untrained_model_fails_the_smoke_test_and_nothing_is_exported(stopping_run, tiny_model_path, tmp_path):
    fake = _fake_run(stopping_run, tmp_path / "untrained-run", tiny_model_path)
    out = tmp_path / "out" / "export"
    result = _export(str(fake), "--to", str(out), "--smoke-max-tokens", "24")
    assert result.exit_code == 1
    assert "smoke test failed: 4 of 4 greedy replies did not stop at an EOS id within 24 new tokens" in result.output
    assert "the chat template ends assistant turns with: '<|im_end|>' (id 4)" in result.output
    assert "never produced '<|im_end|>' (id 4)" in result.output and "template mismatch" in result.output
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []  # no export, no temporary folder
    result = _export(str(fake), "--to", str(out), "--no-smoke-test")  # the user may still insist
    assert result.exit_code == 0 and "smoke test: skipped" in result.output
    assert json.loads((out / "ftx_export.json").read_text())["smoke_test"] == "skipped"


@pytest.mark.slow
def test_export_adds_the_end_of_turn_token_a_generation_config_misses(stopping_run, tmp_path):
    fake = _fake_run(stopping_run, tmp_path / "run")
    config_file = fake / "model" / "generation_config.json"
    config = json.loads(config_file.read_text())
    config["eos_token_id"] = [2]  # only the tokenizer's </s>: the classic model that never stops
    config_file.write_text(json.dumps(config))
    out = tmp_path / "export"
    result = _export(str(fake), "--to", str(out))
    assert result.exit_code == 0, result.output
    assert "generation config: added '<|im_end|>' (id 4) to eos_token_id [2]" in result.output
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == [2, 4]
    result = _export(str(fake), "--to", str(out), "--overwrite", "--no-smoke-test")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_the_smoke_check_names_an_eos_mismatch(stopping_run, eval_prompts):
    from ftx_deploy.smoke import SmokeTestFailed, check_smoke, run_smoke_test
    from ftx_deploy.source import find_model, load_for_inference

    model, tokenizer = load_for_inference(find_model(stopping_run), device="cpu")
    report = run_smoke_test(model, tokenizer, eval_prompts[:2], eos_ids=[2, 4], max_new_tokens=16)
    check_smoke(report, tokenizer)  # stops under the right ids
    assert all(g.stopped_at == 4 for g in report.generations)
    report = run_smoke_test(model, tokenizer, eval_prompts[:2], eos_ids=[2], max_new_tokens=16)
    with pytest.raises(SmokeTestFailed) as caught:
        check_smoke(report, tokenizer)
    message = str(caught.value)
    assert "2 of 2 greedy replies did not stop" in message
    assert "EOS mismatch: the model ended its turn with '<|im_end|>' (id 4), which is not in eos_token_id [2]" in message


@pytest.mark.slow
def test_smoke_test_falls_back_to_generic_prompts_when_the_data_is_gone(stopping_run, tmp_path):
    fake = _fake_run(stopping_run, tmp_path / "run")
    lock = fake / "recipe.lock.toml"
    lock.write_text(lock.read_text().replace(str(Path(__file__).resolve().parents[3] / "recipes"), str(tmp_path / "gone")))
    result = _export(str(fake), "--to", str(tmp_path / "export"), "--smoke-max-tokens", "32")
    assert "cannot rebuild the run's eval split" in result.output and "using generic prompts" in result.output
    assert result.exit_code == 0, result.output
    assert "file not found" in result.output and "2 of 2 greedy replies (generic prompts) stopped" in result.output


@pytest.fixture(scope="module")
def qlora_run(ftx_home, tmp_path_factory, train_quickstart):
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("ftx_lora", reason="the qlora method (ftx-lora) is not installed")
    overrides = ["method.use=qlora", "method.r=4", "train.max_steps=4", "train.lr=1e-2", "train.device=cpu"]
    return train_quickstart(tmp_path_factory.getbasetemp() / "deploy-qlora-run", overrides)


@pytest.mark.slow
def test_qlora_merges_through_the_dequantised_base_and_exports_as_adapter(qlora_run, tmp_path):
    import torch
    from ftx.api import load_trained
    from ftx_deploy.source import find_model, load_causal_lm, load_for_inference
    from peft import PeftModel
    from safetensors import safe_open

    merged_dir = tmp_path / "merged"
    result = _export(str(qlora_run), "--to", str(merged_dir), "--no-smoke-test")  # --merge is the default
    assert result.exit_code == 0, result.output
    assert "merge: dequantising 14 quantised layers to float32" in result.output
    assert not (merged_dir / "adapter_config.json").exists()
    with safe_open(str(merged_dir / "model.safetensors"), "pt") as weights:
        assert not [k for k in weights.keys() if "lora" in k]  # noqa: SIM118 - not a dict

    source = find_model(qlora_run)
    run_model, tokenizer = load_for_inference(source, device="cpu")  # 4-bit base + adapter, as trained
    merged = load_causal_lm(merged_dir, "cpu")
    base = load_trained(source, device="cpu").base  # the original base, to show what a naive merge loses
    naive = PeftModel.from_pretrained(load_causal_lm(base, "cpu"), str(source.model_dir)).merge_and_unload()
    ids = tokenizer(["<|im_start|>user\nReverse the letters.\nk q z<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")
    with torch.no_grad():
        wanted = run_model(**ids).logits
        with run_model.disable_adapter():
            adapter_effect = (run_model(**ids).logits - wanted).abs().max().item()
        ours = (merged(**ids).logits - wanted).abs().max().item()
        into_original = (naive(**ids).logits - wanted).abs().max().item()
    assert adapter_effect > 0.1  # the adapter trained, so a wrong merge would show
    assert ours < into_original / 5  # merged into the dequantised base, not into the original weights

    adapter_dir = tmp_path / "adapter"
    result = _export(str(qlora_run), "--to", str(adapter_dir), "--adapter", "--no-smoke-test")
    assert result.exit_code == 0, result.output
    files = {p.name for p in adapter_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
            "generation_config.json"} <= files and "model.safetensors" not in files
    assert json.loads((adapter_dir / "ftx_export.json").read_text())["mode"] == "adapter"
