"""Figures every run records: parameters, bytes of weights by dtype, peak memory."""

from __future__ import annotations

import resource
import sys
from typing import Any


def parameter_figures(model: Any) -> dict[str, Any]:
    """Trainable and total parameters and weight bytes by dtype (4-bit weights counted as stored)."""
    trainable = 0
    total = 0
    by_dtype: dict[str, int] = {}
    for param in model.parameters():
        count = param.numel()
        stored = count * param.element_size()
        quant = getattr(param, "quant_state", None)
        if quant is not None:  # bitsandbytes Params4bit: packed uint8 holding two 4-bit values
            count *= 2
        total += count
        if param.requires_grad:
            trainable += count
        key = "int4" if quant is not None else str(param.dtype).removeprefix("torch.")
        by_dtype[key] = by_dtype.get(key, 0) + stored
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": round(trainable / total, 6) if total else 0.0,
        "weight_bytes": by_dtype,
    }


def peak_memory(device: str) -> dict[str, float]:
    """Peak resident memory of this process (MiB), and peak CUDA memory where a GPU was used."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    out = {"peak_rss_mib": round(rss_mib, 1)}
    if device == "cuda":
        import torch

        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
