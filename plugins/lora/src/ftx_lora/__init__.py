"""ftx plugin: the ``lora``, ``dora`` and ``qlora`` methods (low-rank adapters on a frozen base).

Only the options live here, so ``ftx validate`` checks a recipe's ``[method]`` table without importing
torch, peft or bitsandbytes; the methods themselves are in :mod:`ftx_lora.method`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from ftx_hookspecs import MethodSpec, Options, hookimpl
from pydantic import Field, field_validator, model_validator

INITS = ("default", "gaussian", "pissa", "olora", "orthogonal")
"""``init`` values besides ``pissa_niter_<n>``; ``pissa*`` and ``olora`` also change the base weights."""


class LoraOptions(Options):
    """``[method] use = "lora"``: a low-rank update ``B @ A`` beside each targeted weight; the base stays frozen."""

    r: int = Field(16, gt=0, le=4096, description="rank of each adapter: capacity and size grow with it")
    alpha: float | None = Field(
        None, gt=0, description="scale of the update is alpha / r (alpha / sqrt(r) with use_rslora); default 2 x r"
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input while training")
    target_modules: list[str] | str = Field(
        "auto",
        description=(
            "which linear layers get adapters: 'auto' (attention and MLP projections of known architectures, "
            "else every linear layer), 'all-linear', a list of module names (e.g. ['q_proj', 'v_proj']), "
            "or a regular expression matched against full module names"
        ),
    )
    use_dora: bool = Field(False, description="DoRA: also learn a per-column magnitude (better at low r, slower)")
    use_rslora: bool = Field(False, description="rank-stabilised scaling alpha / sqrt(r); helps at large r")
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="modules trained fully and saved with the adapter, e.g. ['lm_head'] or ['score']",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="which biases train")
    init: str = Field(
        "default",
        description=(
            "how the adapters start (peft's init_lora_weights): 'default' (B = 0: no change at step 0), 'gaussian', "
            "'pissa' (A, B from the top singular vectors of each weight; the base keeps the residual: faster "
            "convergence), 'pissa_niter_<n>' (PiSSA by a fast n-iteration SVD, for large weights), 'olora' "
            "(QR-based orthonormal start), 'orthogonal'"
        ),
    )
    loraplus_lr_ratio: float | None = Field(
        None, gt=0, description="LoRA+: the B matrices learn at train.lr x this ratio (the paper suggests 16); "
        "default: one learning rate for all"
    )

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            if not value:
                raise ValueError("must name at least one module, or be 'auto' / 'all-linear'")
            if any(not name.strip() for name in value):
                raise ValueError("module names must not be empty")
            return value
        if value in ("auto", "all-linear"):
            return value
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is neither 'auto', 'all-linear' nor a valid regular expression ({exc})") from None
        return value

    @field_validator("init")
    @classmethod
    def _init(cls, value: str) -> str:
        if value in INITS or re.fullmatch(r"pissa_niter_[0-9]+", value):
            return value
        raise ValueError(f"unknown init {value!r}; use one of {', '.join(INITS)} or 'pissa_niter_<n>' (e.g. pissa_niter_4)")

    @field_validator("modules_to_save")
    @classmethod
    def _saved(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("module names must not be empty")
        return value

    @property
    def scale_alpha(self) -> float:
        """``alpha`` with its default filled in."""
        return float(self.alpha) if self.alpha is not None else 2.0 * self.r

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: adapters are the only trainable parameters (:mod:`ftx_lora.memory`)."""
        from .memory import lora_plan

        return lora_plan(self, shape, plan)


def refuse_base_rewrite(init: str) -> None:
    """A quantised base cannot hold the residual weights PiSSA and OLoRA leave in it."""
    if init.startswith("pissa") or init == "olora":
        raise ValueError(f"init: {init!r} rewrites the base weights, which a quantised base cannot hold "
                         "exactly; use method 'lora', or init 'default' / 'gaussian' / 'orthogonal'")


class DoraOptions(LoraOptions):
    """``[method] use = "dora"``: LoRA with a learned magnitude per output column (``use_dora`` on)."""

    use_dora: bool = Field(True, description="DoRA is on for this method; use 'lora' for plain adapters")


class QLoraOptions(LoraOptions):
    """``[method] use = "qlora"``: LoRA on a base quantised to 4 bits by bitsandbytes."""

    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type: NF4 (normal-float, best) or FP4")
    double_quant: bool = Field(True, description="also quantise the quantisation constants (~0.4 bit/param saved)")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype the 4-bit weights are dequantised to for each matmul; auto: bf16 on GPU, else fp32"
    )
    gradient_checkpointing: bool = Field(
        True, description="recompute activations in the backward pass: much less memory, ~30% slower"
    )

    @model_validator(mode="after")
    def _quantized_init(self) -> QLoraOptions:
        refuse_base_rewrite(self.init)
        return self

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: a 4-bit base under the adapters (:mod:`ftx_lora.memory`)."""
        from .memory import qlora_plan

        return qlora_plan(self, shape, plan)


class Int8Options(LoraOptions):
    """``[method] use = "int8"``: LoRA on a base whose linear layers bitsandbytes stores in 8 bits (LLM.int8)."""

    threshold: float = Field(
        6.0, ge=0, description="LLM.int8 outlier threshold: input features above it are multiplied in 16 bits"
    )
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the layers left unquantised and of the activations; auto: bf16 on GPU, else fp32"
    )
    gradient_checkpointing: bool = Field(
        True, description="recompute activations in the backward pass: much less memory, ~30% slower"
    )

    @model_validator(mode="after")
    def _quantized_init(self) -> Int8Options:
        refuse_base_rewrite(self.init)
        return self

    def memory_plan(self, shape: Any, plan: Any) -> Any:
        """For ``ftx plan``: the base at one byte per weight under the adapters (:mod:`ftx_lora.memory`)."""
        from .memory import int8_plan

        return int8_plan(self, shape, plan)


@hookimpl
def ftx_register_methods(register: Callable[[MethodSpec], None]) -> None:
    register(MethodSpec(
        name="lora",
        summary="LoRA adapters (peft) on a frozen base; save the adapter or a merged model.",
        factory="ftx_lora.method:LoraMethod",
        options=LoraOptions,
    ))
    register(MethodSpec(
        name="dora",
        summary="DoRA: LoRA with learned magnitudes (peft use_dora); same options as lora.",
        factory="ftx_lora.method:LoraMethod",
        options=DoraOptions,
    ))
    register(MethodSpec(
        name="qlora",
        summary="QLoRA: LoRA on a 4-bit (NF4/FP4) bitsandbytes base, with gradient checkpointing.",
        factory="ftx_lora.method:QLoraMethod",
        options=QLoraOptions,
    ))
    register(MethodSpec(
        name="int8",
        summary="LoRA on an 8-bit (LLM.int8) bitsandbytes base: half the weight memory of bf16, closer to it than 4 bits.",
        factory="ftx_lora.method:Int8Method",
        options=Int8Options,
    ))
