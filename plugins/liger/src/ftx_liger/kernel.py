"""The ``liger`` kernel: patch a loaded model with Liger's Triton kernels, or say why it cannot."""

from __future__ import annotations

import importlib
from typing import Any

from ftx.errors import RunError
from ftx_hookspecs import RunContext

from . import LigerOptions

INSTALL_HINT = "pip install liger-kernel (it needs a CUDA GPU and Triton)"


def _liger_patches() -> Any:
    """``liger_kernel.transformers.monkey_patch``, or a RunError that says how to install it."""
    try:
        return importlib.import_module("liger_kernel.transformers.monkey_patch")
    except ImportError as exc:
        raise RunError(f"kernels 'liger' needs the liger-kernel package, which cannot be imported ({exc}): "
                       f"{INSTALL_HINT}; or remove the [[kernels]] table") from None


def _base_model(model: Any) -> Any:
    """The transformers model under a peft wrapper, if there is one."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class LigerKernel:
    """Applies Liger's kernels for the model's architecture, with the recipe's choice of kernels."""

    def __init__(self, options: LigerOptions) -> None:
        self.options = options
        # checked when the run builds its components, so a run that cannot use Liger fails before any work
        self.liger = _liger_patches()
        import torch

        if not torch.cuda.is_available():
            raise RunError("kernels 'liger' run only on a CUDA GPU, and torch sees none here: "
                           "remove the [[kernels]] table to train on this machine")

    def apply(self, model: Any, run: RunContext) -> Any:
        """Patch ``model`` in place; fail with advice off CUDA or for an architecture Liger does not cover."""
        if run.device != "cuda":
            raise RunError(f"kernels 'liger' run only on a CUDA GPU, and this run is on {run.device}: "
                           "remove the [[kernels]] table to train here")
        base = _base_model(model)
        model_type = getattr(getattr(base, "config", None), "model_type", None)
        known = set(self.liger.MODEL_TYPE_TO_APPLY_LIGER_FN)
        if model_type not in known:
            raise RunError(f"kernels 'liger' has no kernels for model type {model_type!r}; it covers "
                           f"{', '.join(sorted(known))}. Remove the [[kernels]] table for this model")
        options = self.options.model_dump()
        if options["fused_linear_cross_entropy"]:
            options["cross_entropy"] = False  # Liger refuses both at once
        self.liger._apply_liger_kernel_to_instance(model=base, **options)
        return model
