"""Full fine-tuning: all parameters train, except those the options freeze."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

from ftx_hookspecs import RunContext

from . import FullOptions

LAYER = re.compile(r"\.layers\.(\d+)\.")


class FullMethod:
    """Trains every weight; ``freeze`` patterns and ``freeze_layers`` turn parts off."""

    def __init__(self, options: FullOptions) -> None:
        self.options = options

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        return {}

    def apply(self, model: Any, ctx: RunContext) -> Any:
        names = [name for name, _ in model.named_parameters()]
        for pattern in self.options.freeze:
            if not any(fnmatch.fnmatch(n, pattern) for n in names):
                from ftx.errors import RecipeError

                raise RecipeError(f"method.freeze: pattern {pattern!r} matches no parameter (e.g. {names[0]!r})")
        for name, param in model.named_parameters():
            param.requires_grad = not self._frozen(name)
        if ctx.train.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model

    def _frozen(self, name: str) -> bool:
        if any(fnmatch.fnmatch(name, p) for p in self.options.freeze):
            return True
        if self.options.freeze_layers:
            if "embed_tokens" in name:
                return True
            match = LAYER.search(name)
            if match and int(match.group(1)) < self.options.freeze_layers:
                return True
        return False

    def save(self, model: Any, path: Path, ctx: RunContext) -> None:
        model.save_pretrained(path)
