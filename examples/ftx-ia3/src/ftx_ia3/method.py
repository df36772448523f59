"""IA3 on peft: check the targets exist, wrap the model, save the adapter (or a merged model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftx.errors import RecipeError
from ftx_hookspecs import RunContext

from . import IA3Options


def linear_names(model: Any) -> set[str]:
    """The last name component of every linear layer (``k_proj``, ``down_proj``, ...)."""
    import torch

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


class IA3Method:
    """A :class:`ftx_hookspecs.Method` whose trainable weights are peft's IA3 vectors."""

    def __init__(self, options: IA3Options) -> None:
        self.options = options

    def load_kwargs(self, ctx: RunContext) -> dict[str, Any]:
        return {}

    def apply(self, model: Any, ctx: RunContext) -> Any:
        from peft import IA3Config, get_peft_model

        found = linear_names(model)
        missing = [m for m in self.options.target_modules if m not in found]
        if missing:
            raise RecipeError(f"method.target_modules: {missing} are not linear layers of this model; "
                              f"it has {sorted(found)}")
        if ctx.train.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        config = IA3Config(
            task_type="CAUSAL_LM",
            target_modules=list(self.options.target_modules),
            feedforward_modules=list(self.options.feedforward_modules),
        )
        return get_peft_model(model, config)

    def save(self, model: Any, path: Path, ctx: RunContext) -> None:
        """``[output] save = "merged"`` folds the vectors into the weights; otherwise the adapter is saved."""
        if ctx.recipe.get("output", {}).get("save", "auto") == "merged":
            model.merge_and_unload().save_pretrained(path)
            return
        for config in model.peft_config.values():  # an absolute base path, so the adapter loads from anywhere
            base = config.base_model_name_or_path
            if base and Path(base).exists():
                config.base_model_name_or_path = str(Path(base).resolve())
        model.save_pretrained(path)
