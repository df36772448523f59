"""Built-in tiny models: a small Llama-architecture model and a tokenizer trained locally.

``builtin:tiny-llama`` needs no network: the tokenizer is trained with ``tokenizers`` on text the
project generates, the model is built from a config, and both are cached under ``$FTX_HOME`` keyed
by everything that shapes them. With ``pretrain_steps`` the model is first pre-trained on generated
text and tasks, so adapter methods (LoRA, QLoRA) have a base that already knows something.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..paths import ftx_home
from .templates import CHATML

BUILDER_VERSION = "1"
"""Bump when the tokenizer corpus or the pre-training recipe changes, to invalidate caches."""

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-llama": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
    },
    "small-llama": {
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
    },
}
VOCAB_SIZE = 512
PRETRAIN_TASKS = ("copy", "sort", "first", "last", "upper", "double")
"""Tasks the pre-trained base sees; ``reverse`` is kept out so fine-tuning has something to learn."""
PRETRAIN_ONLY_TASKS: dict[str, tuple[str, Any]] = {
    "second": ("Say the second letter.", lambda xs: xs[1:2]),
    "last_two": ("Say the last two letters.", lambda xs: xs[-2:]),
    "drop_first": ("Drop the first letter.", lambda xs: xs[1:]),
    "drop_last": ("Drop the last letter.", lambda xs: xs[:-1]),
    "swap_ends": ("Swap the first and last letters.", lambda xs: xs[-1:] + xs[1:-1] + xs[:1]),
}
"""Positional skills (find a letter by its place, from either end) that adapters can build reversal on."""
PRETRAIN_VERSION = "2"
"""Bump when the pre-training data or schedule changes; it keys only pre-trained models' caches."""
PRETRAIN_LR = 2e-3


def builtin_names() -> list[str]:
    """Names accepted as ``builtin:<name>``."""
    return sorted(TINY_CONFIGS)


def model_config(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The config of a built-in model with the recipe's overrides applied."""
    if name not in TINY_CONFIGS:
        raise RecipeError(f"model.name: unknown built-in model 'builtin:{name}'; built-ins: "
                          + ", ".join(f"builtin:{n}" for n in builtin_names()))
    return {**TINY_CONFIGS[name], **dict(overrides)}


def cache_key(config: Mapping[str, Any], pretrain_steps: int, seed: int = 0) -> str:
    """A short hash of everything that shapes a built-in model."""
    key: dict[str, Any] = {"config": dict(config), "pretrain": pretrain_steps, "seed": seed, "v": BUILDER_VERSION}
    if pretrain_steps:
        key["pv"] = PRETRAIN_VERSION
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tokenizer_corpus() -> Iterator[str]:
    """Text the tokenizer is trained on: generated tasks, general text and chat markup."""
    from ..demo_data import TASKS, general_text, task_rows

    for task in TASKS:
        for row in task_rows(task, 300, seed=123):
            yield f"<|im_start|>user\n{row['instruction']}\n{row['input']}<|im_end|>\n<|im_start|>assistant\n{row['output']}<|im_end|>\n"
    yield from general_text(3000, seed=123)
    yield "0 1 2 3 4 5 6 7 8 9 . , ; : ! ? ' \" ( ) [ ] { } - + = * / A B C D E F G H I J K L M N O P Q R S T U V W X Y Z"


def train_tokenizer() -> Any:
    """Train a byte-level BPE tokenizer with the chatml template; returns a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>", bos_token=None
    )
    fast.chat_template = CHATML
    fast.model_max_length = 4096
    return fast


def ensure_builtin(spec: str, overrides: Mapping[str, Any], pretrain_steps: int = 0, echo: Any = None) -> Path:
    """Return the cached folder of ``builtin:<name>``, building (and pre-training) it once."""
    name = spec.removeprefix("builtin:")
    config = model_config(name, overrides)
    target = ftx_home() / "models" / f"{name}-{cache_key(config, pretrain_steps)}"
    if (target / "config.json").exists():
        return target
    if echo:
        echo(f"building builtin:{name} (cached in {target})" + (f", pre-training {pretrain_steps} steps" if pretrain_steps else ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = train_tokenizer()
        model = _build_model(config, tokenizer)
        if pretrain_steps:
            pretrain(model, tokenizer, pretrain_steps)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _build_model(config: Mapping[str, Any], tokenizer: Any) -> Any:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=eos[0],
        **dict(config),
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    return model


def pretrain_rows(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` alpaca rows of each pre-training task (generated ones and positional ones), not ``reverse``."""
    import random

    from ..demo_data import task_rows

    rows = [row for task in PRETRAIN_TASKS for row in task_rows(task, n, seed=seed)]
    for name, (instruction, solve) in PRETRAIN_ONLY_TASKS.items():
        rng = random.Random(f"{name}-{seed}")
        for _ in range(n):
            letters = [rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7))]
            rows.append({"instruction": instruction, "input": " ".join(letters), "output": " ".join(solve(letters))})
    return rows


def pretrain_texts(tokenizer: Any, seed: int = 0) -> Iterator[str]:
    """An endless mix of chat-formatted tasks (two of three) and general sentences (one of three)."""
    import random

    from ..demo_data import general_text

    rng = random.Random(seed)
    round_ = 0
    while True:
        rows = pretrain_rows(100, seed=1000 + round_)
        rng.shuffle(rows)
        sentences = iter(general_text(len(rows), seed=1000 + round_))
        for index, row in enumerate(rows):
            messages = [
                {"role": "user", "content": f"{row['instruction']}\n{row['input']}"},
                {"role": "assistant", "content": row["output"]},
            ]
            yield tokenizer.apply_chat_template(messages, tokenize=False)
            if index % 2:
                yield next(sentences) + "<|endoftext|>"
        round_ += 1


def pretrain(model: Any, tokenizer: Any, steps: int, batch_size: int = 32, lr: float = PRETRAIN_LR) -> None:
    """Pre-train in place with next-token loss on :func:`pretrain_texts`; deterministic for a config.

    Warm up for 5% of the steps, then a cosine decay to a tenth of ``lr``.
    """
    import math

    import torch

    torch.manual_seed(0)
    texts = pretrain_texts(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    for _ in range(steps):
        batch = tokenizer([next(texts) for _ in range(batch_size)], return_tensors="pt", padding=True,
                          truncation=True, max_length=128)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
