"""ftx's public plugin API: everything a plugin may import from ftx, besides ``ftx_hookspecs``.

Plugins (first-party ones included) import from here, ``ftx.errors`` and ``ftx.testing`` only;
every other ``ftx.*`` module is private and may change in any release (a test scans the plugins).
Names here change only with a new major version of ftx (see docs/plugins/versioning.md).
Importing this module never imports torch: the helpers import it when they are called.
"""

from __future__ import annotations

from .data.cache import TokenizeResult, tokenize_prepared
from .data.tokenize import IGNORE_INDEX, Tokenized, tokenize_chat, tokenize_example, tokenize_text
from .errors import DataError, EvaluationSkipped, FtxError, Problem, RecipeError, RunError, RunInterrupted
from .generation import generate_replies, stop_token_ids
from .training import CausalLMCollator, PackedCollator, pack_rows

__all__ = [
    "IGNORE_INDEX",
    "CausalLMCollator",
    "DataError",
    "EvaluationSkipped",
    "FtxError",
    "PackedCollator",
    "Problem",
    "RecipeError",
    "RunError",
    "RunInterrupted",
    "TokenizeResult",
    "Tokenized",
    "generate_replies",
    "pack_rows",
    "stop_token_ids",
    "tokenize_chat",
    "tokenize_example",
    "tokenize_prepared",
    "tokenize_text",
]
