"""ftx-ia3: the ``ia3`` method, a plugin that lives outside the ftx repository's ``plugins/``.

IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning") freezes the model and learns one vector per targeted layer that rescales its
activations: the keys and values of attention, and the input of the feed-forward down projection.
It trains far fewer weights than LoRA (a few hundred on the tests' tiny model).

This module is what ftx imports at start-up: options and the hook only, no torch or peft.
"""

from __future__ import annotations

from collections.abc import Callable

from ftx_hookspecs import MethodSpec, Options, hookimpl
from pydantic import Field, model_validator


class IA3Options(Options):
    """``[method] use = "ia3"``."""

    target_modules: list[str] = Field(
        default_factory=lambda: ["k_proj", "v_proj", "down_proj"],
        min_length=1,
        description="names of the linear layers that get a learned scaling vector (Llama-style names)",
    )
    feedforward_modules: list[str] = Field(
        default_factory=lambda: ["down_proj"],
        description="those of target_modules that are feed-forward layers: their input is scaled, not their output",
    )

    @model_validator(mode="after")
    def _feedforward_is_targeted(self) -> IA3Options:
        extra = sorted(set(self.feedforward_modules) - set(self.target_modules))
        if extra:
            raise ValueError(f"feedforward_modules {extra} must also be listed in target_modules")
        return self


@hookimpl
def ftx_register_methods(register: Callable[[MethodSpec], None]) -> None:
    register(MethodSpec(
        name="ia3",
        summary="IA3 (peft): learned vectors rescale attention keys/values and feed-forward inputs; the base stays frozen.",
        factory="ftx_ia3.method:IA3Method",
        options=IA3Options,
    ))
