"""The one device rule: what ``"auto"`` means for training, evaluation, planning and serving alike."""

from __future__ import annotations

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def resolve_device(requested: str = "auto") -> str:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; any other name is returned as given.

    torch is imported only to answer ``auto``, so callers that pass an explicit device stay light.
    """
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
