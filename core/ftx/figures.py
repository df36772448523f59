"""Figures every run records: parameters, bytes of weights by dtype, peak memory."""

from __future__ import annotations

import resource
import sys
from typing import Any


def parameter_figures(model: Any) -> dict[str, Any]:
    """Trainable and total parameters, and weight bytes by dtype.

    bitsandbytes 4-bit weights count as the parameters they hold (from their quant state's shape),
    stored under ``int4``; their quantisation constants (absmax per block, nested constants with
    double quantisation, code tables) are real memory too and are counted under ``int4_constants``.
    """
    trainable = 0
    total = 0
    by_dtype: dict[str, int] = {}
    seen_constants: set[int] = set()
    for param in model.parameters():
        count = param.numel()
        stored = count * param.element_size()
        quant = getattr(param, "quant_state", None)
        if quant is not None:  # bitsandbytes Params4bit: packed storage holding two 4-bit values a byte
            count = _numel(getattr(quant, "shape", None)) or count * param.element_size() * 2
            constants = _constant_bytes(quant, seen_constants)
            if constants:
                by_dtype["int4_constants"] = by_dtype.get("int4_constants", 0) + constants
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


def _numel(shape: Any) -> int:
    if shape is None:
        return 0
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def _constant_bytes(quant: Any, seen: set[int]) -> int:
    """Bytes of a quant state's tensors (and its nested state's), each shared tensor counted once."""
    total = 0
    for state in (quant, getattr(quant, "state2", None)):
        if state is None:
            continue
        for name in ("absmax", "code", "offset"):
            tensor = getattr(state, name, None)
            if tensor is None or not hasattr(tensor, "data_ptr"):
                continue
            key = tensor.data_ptr()
            if key in seen:
                continue
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def _linux_peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rusage_peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def peak_memory(device: str) -> dict[str, float]:
    """Peak resident memory of this process (MiB), and peak CUDA memory where a GPU was used.

    On Linux the peak is ``VmHWM`` of /proc/self/status: ``getrusage``'s ``ru_maxrss`` survives fork and
    exec, so a run started from a large process (a test session, a notebook) would report that process's
    size as its own.
    """
    out = {"peak_rss_mib": round(_linux_peak_rss_mib() or _rusage_peak_rss_mib(), 1)}
    if device == "cuda":
        import torch

        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
