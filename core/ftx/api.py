"""ftx's public plugin API: everything a plugin may import from ftx, besides ``ftx_hookspecs``.

Plugins (first-party ones included) import from here, ``ftx.errors`` and ``ftx.testing`` only;
every other ``ftx.*`` module is private and may change in any release (a test scans the plugins).
Names here change only with a new major version of ftx (see docs/plugins/versioning.md).
Importing this module never imports torch: the helpers import it when they are called.
"""

from __future__ import annotations

from .commands import (  # plugin commands: recipes, runs, run folders, model configs
    apply_overrides,
    evaluator_names,
    is_pipeline,
    load_recipe,
    load_stage,
    model_config,
    plugin_manager,
    read_toml,
    run_recipe,
    toml_loads,
)
from .data.cache import TokenizeResult, tokenize_prepared
from .data.encode import tokenize_all
from .data.tokenize import IGNORE_INDEX, Tokenized, tokenize_chat, tokenize_example, tokenize_text
from .device import resolve_device
from .errors import (
    DataError,
    EvaluationSkipped,
    FtxError,
    NestedOptionsError,
    Problem,
    RecipeError,
    RunError,
    RunInterrupted,
)
from .generation import generate_replies, stop_token_ids
from .layout import CHECKPOINTS as CHECKPOINTS_DIR
from .layout import CURVES as CURVES_FILE
from .layout import ERROR as ERROR_FILE
from .layout import HISTORY as HISTORY_FILE
from .layout import LOCK as LOCK_FILE
from .layout import METRICS as METRICS_FILE
from .layout import MODEL as MODEL_DIR
from .layout import REPORT as REPORT_FILE
from .layout import RunFolder
from .models.loading import resolve_dtype
from .recipe.loader import validation_problems as validate_options
from .recipe.toml_io import dumps as toml_text
from .rundir import replace_dir, write_json, write_text_atomic
from .trained import (
    TrainedModel,
    TrainedSource,
    find_trained,
    load_trained,
    merge_trained,
    read_run_recipe,
    run_examples,
)
from .training import CausalLMCollator, PackedCollator, pack_rows, quiet_libraries

__all__ = [
    "CHECKPOINTS_DIR",
    "CURVES_FILE",
    "ERROR_FILE",
    "HISTORY_FILE",
    "IGNORE_INDEX",
    "LOCK_FILE",
    "METRICS_FILE",
    "MODEL_DIR",
    "REPORT_FILE",
    "CausalLMCollator",
    "DataError",
    "EvaluationSkipped",
    "FtxError",
    "NestedOptionsError",
    "PackedCollator",
    "Problem",
    "RecipeError",
    "RunError",
    "RunFolder",
    "RunInterrupted",
    "TokenizeResult",
    "Tokenized",
    "TrainedModel",
    "TrainedSource",
    "apply_overrides",
    "evaluator_names",
    "find_trained",
    "generate_replies",
    "is_pipeline",
    "load_recipe",
    "load_stage",
    "load_trained",
    "merge_trained",
    "model_config",
    "pack_rows",
    "plugin_manager",
    "quiet_libraries",
    "read_run_recipe",
    "read_toml",
    "replace_dir",
    "resolve_device",
    "resolve_dtype",
    "run_examples",
    "run_recipe",
    "stop_token_ids",
    "tokenize_all",
    "tokenize_chat",
    "tokenize_example",
    "tokenize_prepared",
    "tokenize_text",
    "toml_loads",
    "toml_text",
    "validate_options",
    "write_json",
    "write_text_atomic",
]
