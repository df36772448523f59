"""What ftx plugin authors import: hook markers, component specs, example records and Protocols.

This package depends on pluggy and pydantic only, so a plugin's ``__init__`` stays light.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import specs
from .components import (
    CommandSpec,
    ComponentSpec,
    DataFormatSpec,
    EvaluatorSpec,
    KernelSpec,
    LoggerSpec,
    MethodSpec,
    NoOptions,
    ObjectiveSpec,
    Options,
    RewardSpec,
)
from .examples import (
    ChatExample,
    ClassificationExample,
    Example,
    Message,
    PreferenceExample,
    RowError,
    TextExample,
)
from .examples import ROLES, TRAINED_ROLES
from .kinds import COMPONENT_KINDS, KIND_BY_HOOK, KIND_BY_NAME, ComponentKind
from .markers import PROJECT_NAME, hookimpl, hookspec
from .memory import MemoryPlan, MemoryPlanner, ModelShape
from .protocols import DataFormat, Evaluator, Kernel, Logger, Method, Objective, Reward, RunContext, TrainResult

try:
    __version__ = version("ftx-hookspecs")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "COMPONENT_KINDS",
    "KIND_BY_HOOK",
    "KIND_BY_NAME",
    "PROJECT_NAME",
    "ROLES",
    "TRAINED_ROLES",
    "ChatExample",
    "ClassificationExample",
    "CommandSpec",
    "ComponentKind",
    "ComponentSpec",
    "DataFormat",
    "DataFormatSpec",
    "Evaluator",
    "EvaluatorSpec",
    "Example",
    "Kernel",
    "KernelSpec",
    "Logger",
    "LoggerSpec",
    "MemoryPlan",
    "MemoryPlanner",
    "Message",
    "Method",
    "MethodSpec",
    "ModelShape",
    "NoOptions",
    "Objective",
    "ObjectiveSpec",
    "Options",
    "PreferenceExample",
    "Reward",
    "RewardSpec",
    "RowError",
    "RunContext",
    "TextExample",
    "TrainResult",
    "__version__",
    "hookimpl",
    "hookspec",
    "specs",
]
