"""Packing: no attention or loss crosses example boundaries, so packed and padded training agree."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ftx.testing import tiny_model_recipe_table
from ftx.training import CausalLMCollator, PackedCollator, pack_rows


def _features(n: int, seed: int = 0) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(3, 40)
        ids = [rng.randint(5, 400) for _ in range(length)]
        prompt = rng.randint(1, length - 1)
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def _loss_and_grad(model, batch):
    model.zero_grad()
    out = model(**batch, use_cache=False)
    out.loss.backward()
    grad = model.get_input_embeddings().weight.grad.clone()
    return out.loss.item(), grad


def test_pack_rows_fills_rows_without_splitting_examples():
    lengths = [30, 5, 20, 12, 40, 3, 9]
    rows = pack_rows(lengths, 40)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 40 for row in rows)
    assert len(rows) == 3  # 40 | 30+9 | 20+12+5+3: the fewest rows for 119 tokens
    assert pack_rows(lengths, None) == [list(range(len(lengths)))]
    assert pack_rows([50, 10], 40) == [[0], [1]]  # too long for a row: a row of its own


@pytest.mark.parametrize(("attn", "capacity"), [("sdpa", None), ("sdpa", 30), ("eager", None)])
def test_packed_batch_gives_the_padded_loss_and_gradient(tiny_model_path, capacity, attn):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, attn_implementation=attn)
    features = _features(10)
    padded = CausalLMCollator(pad_token_id=0)(features)
    packed = PackedCollator(max_length=capacity, pad_token_id=0)(features)
    assert "attention_mask" not in packed
    lengths = [len(f["input_ids"]) for f in features]
    # rows no wider than the longest example (nor max_length): never more compute than padding
    assert packed["input_ids"].shape[1] <= max(lengths)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    assert (packed["labels"][:, 1:] != -100).sum() == (padded["labels"][:, 1:] != -100).sum()
    loss_padded, grad_padded = _loss_and_grad(model, padded)
    loss_packed, grad_packed = _loss_and_grad(model, packed)
    assert abs(loss_packed - loss_padded) < 1e-5
    assert torch.allclose(grad_packed, grad_padded, atol=1e-6)

    # the check can fail: positions that do not restart let examples attend to each other
    leaky = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1]).expand_as(packed["input_ids"]))
    loss_leaky, _ = _loss_and_grad(model, leaky)
    assert abs(loss_leaky - loss_padded) > 1e-3


def _write_alpaca(path, n: int = 24, seed: int = 1) -> None:
    rng = random.Random(seed)
    words = "the cat sat on a mat and then it ran far away from home".split()
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))
            handle.write(json.dumps({"instruction": "Reverse the words.", "input": text,
                                     "output": " ".join(reversed(text.split()))}) + "\n")


def _recipe(data, packing: bool, out_dir, **data_extra) -> dict:
    return {
        "model": tiny_model_recipe_table(),
        "data": {"format": "alpaca", "train": str(data), "eval": 0.25, "max_length": 96, "packing": packing,
                 "cache": False, **data_extra},
        "method": {"use": "full"},
        "objective": {"use": "sft"},
        "train": {"max_steps": 4, "batch_size": 4, "lr": 1e-3, "log_every": 1, "seed": 3, "device": "cpu"},
        "output": {"dir": str(out_dir)},
    }


def train_sft(recipe_path: Path, run_dir: Path) -> list[float]:
    """The runner's data, model and objective steps without the evaluators; the per-step losses."""
    from transformers import AutoModelForCausalLM

    from ftx.context import Run
    from ftx.data.prepare import prepare_examples
    from ftx.models.loading import load_tokenizer, resolve_model_path
    from ftx.plugins import make_plugin_manager
    from ftx.recipe import load_recipe

    manager = make_plugin_manager()
    recipe = load_recipe(recipe_path, manager.registry)
    run = Run(recipe, run_dir, manager, echo_fn=lambda _m: None)
    run.data = prepare_examples(recipe.data, recipe.data_format.build(), recipe.train.seed)
    path = resolve_model_path(recipe.model)
    run.tokenizer = load_tokenizer(recipe.model, path)
    model = AutoModelForCausalLM.from_pretrained(path)
    result = recipe.objective.build().train(model, run)
    return [h["loss"] for h in result.history if "loss" in h]


@pytest.mark.slow
def test_packed_and_padded_training_give_the_same_loss(tmp_path, write_recipe, ftx_home):
    data = tmp_path / "train.jsonl"
    _write_alpaca(data)
    losses = {}
    for packing in (False, True):
        recipe = write_recipe(_recipe(data, packing, tmp_path / f"run-{packing}"), name=f"r{packing}.toml")
        losses[packing] = train_sft(recipe, tmp_path / f"run-{packing}")
    assert len(losses[True]) == len(losses[False]) == 4
    for step, (a, b) in enumerate(zip(losses[False], losses[True]), 1):
        assert abs(a - b) < 1e-4, f"step {step}: padded {a} vs packed {b}"
    assert losses[False][0] != losses[False][-1]  # it trained: the comparison covers updated weights too
