"""A real pre-trained chat model end to end: SmolLM2-135M-Instruct read from ``../shared/models``'s GGUF file.

The tokenizer, chat template and end-of-turn token are the model's own (ChatML with ``<|im_end|>``
and a default system turn), which is where template, mask and EOS bugs live. The file is converted
once per test session through ftx's cache (about a minute on 2 busy cores); every test here skips
with a reason where the file is absent, and the ones that train or generate are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ftx.data.tokenize import IGNORE_INDEX, tokenize_chat
from ftx.generation import stop_token_ids
from ftx.models.templates import template_end_of_turn
from ftx.recipe.schema import ModelSection
from ftx_hookspecs import ChatExample

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO.parent / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "What is the capital of France?"
SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="session")
def smollm2_folder(ftx_home: Path) -> Path:
    """The GGUF file converted to a plain folder by ftx (once per session, then from the cache)."""
    if not GGUF.is_file():
        pytest.skip(f"SmolLM2 GGUF not available at {GGUF} (only in ftx's development checkout)")
    from ftx.models.loading import resolve_model_path

    return Path(resolve_model_path(ModelSection(name=str(GGUF))))


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_folder: Path):
    from ftx.models.loading import load_tokenizer

    return load_tokenizer(ModelSection(name=str(GGUF)), str(smollm2_folder))


def test_the_gguf_brings_its_own_template_and_end_of_turn(smollm2_tokenizer, smollm2_folder):
    tok = smollm2_tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert "<|im_start|>" in tok.chat_template and "SmolLM" in tok.chat_template  # its own, not ftx's chatml
    assert template_end_of_turn(tok) == im_end
    assert im_end in stop_token_ids(tok)
    assert (smollm2_folder / "ftx_gguf.json").is_file() and (smollm2_folder / "model.safetensors").is_file()


def _expected_labels(tokenizer, text: str, answers: list[str]) -> tuple[list[int], list[int]]:
    """Ids of the whole rendered text in one go, and labels from character offsets: a token trains iff it
    lies inside an answer or is the ``<|im_end|>`` right after it."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, at = [], 0
    for answer in answers:
        start = text.index("<|im_start|>assistant\n" + answer + "<|im_end|>", at) + len("<|im_start|>assistant\n")
        end = start + len(answer) + len("<|im_end|>")
        spans.append((start, end))
        at = end
    labels = [tid if any(s <= a and b <= e for s, e in spans) else IGNORE_INDEX
              for tid, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"])]
    return encoded["input_ids"], labels


@pytest.mark.parametrize("with_system", [False, True])
def test_mask_token_by_token_on_smollm2s_template(smollm2_tokenizer, with_system):
    tok = smollm2_tokenizer
    messages = [
        {"role": "user", "content": "Route this message: my parcel #12345 has not arrived."},
        {"role": "assistant", "content": "shipping"},
        {"role": "user", "content": "And: I was charged twice, invoice INV-2231."},
        {"role": "assistant", "content": "billing, with a note: refund 12.50 EUR"},
    ]
    if with_system:
        messages.insert(0, {"role": "system", "content": "Answer with one word."})
    tokenized = tokenize_chat(tok, ChatExample(messages))
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text.startswith("<|im_start|>system\nAnswer with one word." if with_system else SYSTEM)
    ids, labels = _expected_labels(tok, text, ["shipping", "billing, with a note: refund 12.50 EUR"])
    assert tokenized.input_ids == ids  # cutting at the spans changed no token
    assert tokenized.labels == labels
    trained = [tok.decode([t]) for t in tokenized.labels if t != IGNORE_INDEX]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert "".join(trained) == "shipping<|im_end|>billing, with a note: refund 12.50 EUR<|im_end|>"
    # nothing else trains: no system turn, no user turn, no header, not the newline after <|im_end|>
    assert sum(1 for t in tokenized.labels if t == im_end) == 2
    assert tokenized.labels[-1] == IGNORE_INDEX and tok.decode([tokenized.input_ids[-1]]) == "\n"


def test_data_preview_shows_the_models_template(smollm2_tokenizer, plugin_manager, write_recipe, tmp_path):
    from ftx.data.preview import preview

    data = tmp_path / "rows.jsonl"
    data.write_text('{"instruction": "Name the team.", "input": "my parcel is late", "output": "shipping"}\n' * 4)
    recipe = plugin_manager.load_recipe(write_recipe({
        "model": {"name": str(GGUF)}, "data": {"format": "alpaca", "train": str(data), "eval": 0.25},
        "method": {"use": "lora"}, "objective": {"use": "sft"},
    }))
    lines: list[str] = []
    preview(recipe, 1, echo=lines.append)  # loads the tokenizer through the GGUF cache
    shown = "\n".join(lines)
    assert SYSTEM + "<|im_start|>user\nName the team.\nmy parcel is late<|im_end|>\n<|im_start|>assistant\n" in shown
    assert "[[shipping<|im_end|>]]" in shown


def _greedy_ids(model, tokenizer, question: str, max_new_tokens: int) -> list[int]:
    import torch

    batch = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, batch["input_ids"].shape[1]:].tolist()


@pytest.mark.slow
@pytest.mark.long
def test_loading_through_ftx_changes_no_greedy_token(smollm2_folder, smollm2_tokenizer):
    """ftx's cached folder gives the same greedy reply as transformers reading the GGUF file itself."""
    import torch
    from ftx.models.loading import load_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    section = ModelSection(name=str(GGUF), dtype="float32")
    ours = load_model(section, str(smollm2_folder), head="causal-lm", device="cpu", tokenizer=smollm2_tokenizer, extra={})
    ids = _greedy_ids(ours.eval(), smollm2_tokenizer, QUESTION, 24)
    plain_tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    plain = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32).eval()
    assert ids == _greedy_ids(plain, plain_tok, QUESTION, 24)
    assert "Paris" in smollm2_tokenizer.decode(ids) and ids[-1] == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.slow
def test_lora_steps_then_export_loads_plainly_and_stops_at_im_end(smollm2_folder, write_recipe, run_recipe, tmp_path):
    """A few LoRA steps on SmolLM2; ``ftx export`` merges the adapter into a plain transformers model (its smoke
    test passing) that ends its greedy reply with <|im_end|> under its own generation config."""
    import torch
    from click.testing import CliRunner
    from ftx.cli import main
    from ftx.demo_data import ROUTING_INSTRUCTION, routing_rows, write_jsonl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(routing_rows(24, seed=3), tmp_path / "routing.jsonl")
    recipe = write_recipe({
        "model": {"name": str(GGUF), "dtype": "float32"},
        "data": {"format": "messages", "train": str(data), "eval": 0.25, "max_length": 128, "system": ROUTING_INSTRUCTION},
        "method": {"use": "lora", "r": 8, "alpha": 16, "target_modules": "all-linear"},
        "objective": {"use": "sft"},
        "train": {"max_steps": 6, "batch_size": 4, "lr": 2e-3, "log_every": 1, "threads": 2},
        "evaluation": {"samples": 0, "forgetting": False},
    })
    run_dir = tmp_path / "run"
    run_recipe(recipe, output=run_dir)
    adapter = run_dir / "model"
    assert (adapter / "adapter_config.json").is_file()
    assert "SmolLM" in AutoTokenizer.from_pretrained(adapter).chat_template  # saved with the model's own template

    merged = tmp_path / "merged"
    result = CliRunner().invoke(main, ["export", str(run_dir), "--to", str(merged), "--smoke-prompts", "2"])
    assert result.exit_code == 0, result.output
    assert not (merged / "adapter_config.json").exists()

    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    assert im_end in ([eos] if isinstance(eos, int) else eos)
    batch = tokenizer.apply_chat_template(
        [{"role": "system", "content": ROUTING_INSTRUCTION}, {"role": "user", "content": "My parcel #55555 has not arrived."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=48, do_sample=False)[0, batch["input_ids"].shape[1]:].tolist()
    assert ids[-1] == im_end and len(ids) < 48, tokenizer.decode(ids)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_lora_run_exports_a_gguf_that_reads_back_and_answers_like_the_merged_model(
        smollm2_folder, write_recipe, run_recipe, tmp_path, quant):
    """A LoRA-tuned SmolLM2 as one GGUF file: ``ftx export --format gguf`` keeps it only after transformers' GGUF
    reader loads it back with the same tokenizer and its greedy replies match the merged model's (f16: identical;
    q8_0: within the stated tolerance); the file is then loaded here independently and ends its turn at <|im_end|>."""
    import json

    import torch
    from click.testing import CliRunner
    from ftx.cli import main
    from ftx.demo_data import ROUTING_INSTRUCTION, routing_rows, write_jsonl
    from ftx_deploy.gguf_check import load_gguf

    data = write_jsonl(routing_rows(24, seed=3), tmp_path / "routing.jsonl")
    recipe = write_recipe({
        "model": {"name": str(GGUF), "dtype": "float32"},
        "data": {"format": "messages", "train": str(data), "eval": 0.25, "max_length": 128, "system": ROUTING_INSTRUCTION},
        "method": {"use": "lora", "r": 8, "alpha": 16, "target_modules": "all-linear"},
        "objective": {"use": "sft"},
        "train": {"max_steps": 4, "batch_size": 4, "lr": 2e-3, "log_every": 1, "threads": 2},
        "evaluation": {"samples": 0, "forgetting": False},
    })
    run_dir = tmp_path / "run"
    run_recipe(recipe, output=run_dir)
    out = tmp_path / "gguf"
    result = CliRunner().invoke(main, ["export", str(run_dir), "--to", str(out), "--format", "gguf", "--quant", quant,
                                       "--smoke-prompts", "4"])
    assert result.exit_code == 0, result.output
    check = json.loads((out / "ftx_export.json").read_text())["gguf"]["check"]
    assert check["replies"] == 6 and check["stopped"] == 6  # 4 eval prompts + 2 long open questions
    if quant == "f16":
        assert check["identical"] == 6 and check["logit_gap"] < 0.02
    else:
        assert check["agreement"] >= 0.75 and check["logit_gap"] < 0.1
    assert 'PARAMETER stop "<|im_end|>"' in (out / "Modelfile").read_text()

    model, tokenizer = load_gguf(out / f"gguf.{quant}.gguf")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    batch = tokenizer.apply_chat_template(
        [{"role": "system", "content": ROUTING_INSTRUCTION}, {"role": "user", "content": "My parcel #55555 has not arrived."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=32, do_sample=False, eos_token_id=[im_end])[0, batch["input_ids"].shape[1]:]
    assert ids[-1].item() == im_end, tokenizer.decode(ids)
