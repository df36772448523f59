"""Shared helpers of the ftx-lora tests: a minimal run context and a non-trivial adapter."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


def make_ctx(save: str = "auto", device: str = "cpu", checkpointing: bool = False) -> Any:
    """What LoRA methods read from the run context."""
    return SimpleNamespace(
        train=SimpleNamespace(gradient_checkpointing=checkpointing),
        recipe={"model": {"name": "builtin:tiny-llama", "dtype": "auto", "config": {}, "pretrain_steps": 0},
                "output": {"save": save}},
        device=device,
        echo=lambda _message: None,
    )


def randomize_adapter(model: Any, seed: int = 0, scale: float = 0.3) -> None:
    """Give lora_B non-zero values: a fresh adapter is the identity, which would hide a broken merge."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)


@pytest.fixture
def ctx_factory():
    return make_ctx
