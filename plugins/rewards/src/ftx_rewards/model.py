"""The ``reward-model`` reward: scores with a reward model that an earlier ftx run trained."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import RewardModelOptions


def model_folder(path: str | Path) -> Path:
    """A run folder's ``model/``, or the folder itself when it holds a model; a clear error otherwise."""
    from ftx.api import MODEL_DIR, RunError

    folder = Path(path).expanduser()
    if (folder / MODEL_DIR / "config.json").exists() or (folder / MODEL_DIR / "adapter_config.json").exists():
        return folder / MODEL_DIR
    if (folder / "config.json").exists() or (folder / "adapter_config.json").exists():
        return folder
    raise RunError(
        f"reward model {str(path)!r}: no model found (expected a run folder of the 'reward' objective with a "
        "model/ inside, or a model folder); train one first, e.g. `ftx run recipes/reward.toml`"
    )


class RewardModelReward:
    """Loads the reward model once and scores prompt + completion as the reward objective trained it."""

    def __init__(self, options: RewardModelOptions) -> None:
        self.options = options
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = model_folder(self.options.path)
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self._tokenizer.pad_token_id
        model.requires_grad_(False)
        self._model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[str | None]) -> list[float]:
        from ftx_preference.encoding import score

        if self._model is None:
            self._load()
        messages = [[{"role": "user", "content": p}] for p in prompts]
        return score(self._model, self._tokenizer, messages, list(completions), style=self.options.render,
                     max_length=self.options.max_length, batch_size=self.options.batch_size)
