"""``[train] optimizer = "auto"``: torch's fused AdamW on CUDA and CPU, the plain one elsewhere; a named one wins."""

from __future__ import annotations

import pytest
from ftx.training import optimizer_name


@pytest.mark.parametrize(("choice", "device", "expected"), [
    ("auto", "cuda", "adamw_torch_fused"),
    ("auto", "cpu", "adamw_torch_fused"),
    ("auto", "mps", "adamw_torch"),
    ("adafactor", "cuda", "adafactor"),
])
def test_auto_picks_the_fused_kernel_where_torch_has_one(choice, device, expected):
    assert optimizer_name(choice, device) == expected


def test_transformers_knows_both_names():
    from transformers import TrainingArguments

    for name in ("adamw_torch_fused", "adamw_torch"):
        assert TrainingArguments(output_dir="unused", optim=name, use_cpu=True).optim.value == name
