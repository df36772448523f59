"""Fixtures of the preference plugin's tests: generated preference data and recipe tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ftx.demo_data import preference_rows, write_jsonl
from ftx.testing import tiny_model_recipe_table

EASY = {"tasks": ("sort", "upper", "double"), "mistakes": ("wrong order", "not capitalised", "dropped letter")}
"""Tasks and mistakes a test-sized model learns to judge in a few hundred steps from scratch."""


@pytest.fixture
def preference_file(tmp_path: Path) -> Path:
    """1,500 generated pairs: the correct answer (chosen) against a wrong one (rejected)."""
    return write_jsonl(preference_rows(1500, seed=3, **EASY), tmp_path / "pairs.jsonl")


def make_preference_recipe(train: Path | str, objective: dict[str, Any], **train_table: Any) -> dict[str, Any]:
    """A recipe on the test-sized tiny model with the preference format and evaluator."""
    return {
        "model": tiny_model_recipe_table(),
        "data": {"format": "preference", "train": str(train), "eval": 0.1, "max_length": 64},
        "method": {"use": "full"},
        "objective": objective,
        "train": {"batch_size": 16, "log_every": 50, "threads": 2, **train_table},
        "evaluators": [{"use": "preference"}],
    }


@pytest.fixture
def preference_recipe() -> Any:
    """``preference_recipe(train_file, objective_table, **train_table)`` -> recipe tables."""
    return make_preference_recipe
