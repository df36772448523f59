"""``[data] packing = true`` for the pairwise objectives: the packed forward gives the padded forward's
log-probabilities, and packed training gives the unpacked losses step by step on the same batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ftx.demo_data import preference_rows, write_jsonl

SPREAD = {"low": 1, "high": 24}
"""Letters per prompt from 1 to 24: sequence lengths spread, so batches carry real padding."""


def _padded_batch(lengths: list[int], vocab: int = 400) -> tuple[Any, Any, Any]:
    """Right-padded ids, attention mask and completion labels (the first 3 tokens of each sequence are prompt)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    width = max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), width), generator=gen)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100
    return ids, mask, labels


def test_packed_forward_gives_the_padded_log_probs_and_gradients(tiny_model_path):
    import torch
    from ftx_preference.packing import PackingStats, packed_forward
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    lengths = [7, 31, 13, 4, 22, 9, 31, 5]  # chosen then rejected, as TRL concatenates them
    ids, mask, labels = _padded_batch(lengths)
    results = {}
    for packed in (False, True):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))  # as DPOTrainer does
        stats = PackingStats()
        with packed_forward([model] if packed else [], stats):
            out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False)
            logits = model(ids, attention_mask=mask, use_cache=False).logits  # the path ORPO and CPO take
        out.log_probs.sum().backward()
        grad = model.get_input_embeddings().weight.grad.clone()
        results[packed] = (out, logits, grad, stats)
    (plain, plain_logits, plain_grad, _), (packed, packed_logits, packed_grad, stats) = results[False], results[True]
    # per-token log-probabilities (zero off the completions), so per-sequence sums, equal the padded forward's
    assert packed.log_probs.shape == plain.log_probs.shape == (len(lengths), max(lengths) - 1)
    assert torch.allclose(packed.log_probs, plain.log_probs, atol=1e-5)
    assert torch.allclose(packed.log_probs.sum(1), plain.log_probs.sum(1), atol=1e-4)
    assert torch.allclose(packed.entropy, plain.entropy, atol=1e-5)
    assert torch.equal(packed.is_top1, plain.is_top1)
    assert torch.allclose(packed_grad, plain_grad, atol=1e-5)
    for row, n in enumerate(lengths):  # full logits on every real position
        assert torch.allclose(packed_logits[row, :n], plain_logits[row, :n], atol=1e-5)
    # two forwards of 8 sequences padded to 31 tokens (248 slots), packed into rows of at most 31 tokens: 4 rows
    assert (stats.real, stats.padded, stats.packed) == (2 * sum(lengths), 2 * 248, 2 * 4 * 31)


def _trainer(kind: str, packed: bool, model_path: Path, rows: list[dict[str, Any]], out: Path) -> Any:
    """A TRL pairwise trainer (or its packed variant) on a fresh copy of the tiny model."""
    import torch
    from datasets import Dataset
    from ftx_preference.dpo import conversational_rows, reference_model
    from ftx_preference.packed_trainers import packed_variant
    from ftx_hookspecs import PreferenceExample
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    examples = [PreferenceExample(prompt=[{"role": "user", "content": r["prompt"]}], chosen=r["chosen"],
                                  rejected=r["rejected"]) for r in rows]
    dataset = Dataset.from_list(conversational_rows(examples, tokenizer, 48))
    common = {"output_dir": str(out), "per_device_train_batch_size": 8, "max_steps": 4, "logging_steps": 1,
              "learning_rate": 1e-3, "report_to": [], "use_cpu": True, "seed": 0, "save_strategy": "no",
              "max_length": 96, "disable_tqdm": True}
    config_class, trainer_class, extra = {
        "dpo": (DPOConfig, DPOTrainer, {"beta": 0.5}),
        "simpo": (CPOConfig, CPOTrainer, {"loss_type": "simpo", "cpo_alpha": 0.5}),
        "orpo": (ORPOConfig, ORPOTrainer, {"beta": 0.5}),
    }[kind]
    trainer_class = packed_variant(trainer_class) if packed else trainer_class
    kwargs = {"ref_model": reference_model(model, _DPOOptions())} if kind == "dpo" else {}
    return trainer_class(model=model, args=config_class(**common, **extra), train_dataset=dataset,
                         processing_class=tokenizer, **kwargs)


class _DPOOptions:
    precompute_ref_log_probs = False


@pytest.mark.parametrize("kind", ["dpo", "simpo", "orpo"])
def test_packed_training_gives_the_unpacked_loss_at_every_step(kind, tiny_model_path, tmp_path):
    """At every step the loss is computed twice on the same batch and the same weights, unpacked (TRL's
    padded forward) and packed; training follows the packed one.

    Two whole runs are not compared: their float32 rounding differs from the first update on, and
    the losses of two runs drift apart by ~3e-4 within 4 steps even between two unpacked runs that
    differ only in padding (``pad_to_multiple_of=64``; measured at lr 1e-4 and 1e-3 alike).
    """
    import contextlib

    import torch

    trainer = _trainer(kind, True, tiny_model_path, preference_rows(64, seed=5, **SPREAD), tmp_path / kind)
    packed_loss = trainer.compute_loss
    pairs: list[tuple[float, float]] = []

    def both(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        trainer.packed = lambda *models: contextlib.nullcontext()  # this instance runs TRL's padded forward
        try:
            with torch.no_grad():
                plain = packed_loss(model, inputs, *args, **kwargs)
        finally:
            del trainer.packed
        loss = packed_loss(model, inputs, *args, **kwargs)
        pairs.append((float(plain), float(loss.detach())))
        return loss

    trainer.compute_loss = both
    trainer.train()
    assert len(pairs) == 4
    for step, (plain, packed) in enumerate(pairs, start=1):
        assert abs(plain - packed) < 1e-4, (step, pairs)
    assert abs(pairs[-1][0] - pairs[0][0]) > 1e-3, pairs  # the weights moved: later steps test trained weights
    stats = trainer.packing_stats
    assert 0 < stats.packed < stats.padded, stats  # padding was actually left out


def test_dpo_recipe_with_packing_trains_and_records_its_figures(preference_recipe, write_recipe, run_recipe,
                                                                tmp_path):
    data = write_jsonl(preference_rows(120, seed=3, **SPREAD), tmp_path / "pairs.jsonl")
    recipe = preference_recipe(data, {"use": "dpo", "beta": 0.5}, max_steps=4, lr=1e-3, log_every=2)
    recipe["data"]["packing"] = True
    metrics = run_recipe(write_recipe(recipe), output=tmp_path / "run")
    train = metrics["train"]
    assert train["steps"] == 4 and train["pairs"] > 0
    assert "final_reward_margins" in train
    # the padded batches were mostly padding at these lengths; the packed rows far less
    assert 0 <= train["pad_share_packed"] < train["pad_share_unpacked"], train
    assert "preference" in metrics["after"]


@pytest.mark.parametrize("objective", ["kto", "reward"])
def test_packing_with_an_objective_that_cannot_pack_is_a_recipe_error(objective, preference_file, preference_recipe,
                                                                      write_recipe, plugin_manager):
    from ftx.errors import RecipeError

    recipe = preference_recipe(preference_file, {"use": objective})
    recipe["data"]["packing"] = True
    with pytest.raises(RecipeError, match=r"data\.packing") as error:
        plugin_manager.load_recipe(write_recipe(recipe))
    assert f"the {objective} objective does not support packing" in str(error.value)
    assert "data.packing = false" in str(error.value)
