"""Component specs: the cheap data a plugin registers for each named method, objective, ...

A spec is imported at start-up, so it must stay light: a name, a one-line summary, a pydantic
model for its recipe table, and a lazy ``"module:attr"`` factory that is imported only when a
recipe selects the component.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class Options(BaseModel):
    """Base for a component's recipe options: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(Options):
    """Options model of a component that takes no options."""


@dataclass(frozen=True)
class ComponentSpec:
    """A named component a recipe can select with ``use = "<name>"``.

    :param name: the name recipes use; lowercase letters, digits, ``.``, ``_`` and ``-``.
    :param summary: one line shown by ``ftx plugins``.
    :param factory: ``"module:attr"``; called with the validated options to build the component.
    :param options: the pydantic model that validates the rest of the component's recipe table.
    """

    kind: ClassVar[str] = "component"

    name: str
    summary: str
    factory: str
    options: type[Options] = NoOptions
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"{self.kind} name {self.name!r} is invalid: use lowercase letters, digits, '.', '_' or '-'"
            )
        module, sep, attr = self.factory.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"{self.kind} {self.name!r}: factory must be 'module:attr', got {self.factory!r}")
        if not (isinstance(self.options, type) and issubclass(self.options, BaseModel)):
            raise TypeError(f"{self.kind} {self.name!r}: options must be a pydantic model class")

    def load_factory(self) -> Callable[..., Any]:
        """Import and return the factory; the only place a component's heavy code is imported."""
        module_name, _, attr_path = self.factory.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise TypeError(f"{self.kind} {self.name!r}: factory {self.factory!r} is not callable")
        factory: Callable[..., Any] = obj
        return factory

    def build(self, options: Options) -> Any:
        """Build the component from validated options."""
        return self.load_factory()(options)


@dataclass(frozen=True)
class MethodSpec(ComponentSpec):
    """How weights become trainable (full, lora, qlora, ...); builds a :class:`~ftx_hookspecs.Method`."""

    kind: ClassVar[str] = "method"


@dataclass(frozen=True)
class ObjectiveSpec(ComponentSpec):
    """What is optimised (sft, reward, dpo, rl, ...); builds an :class:`~ftx_hookspecs.Objective`.

    :param example_kind: the kind of :mod:`~ftx_hookspecs.examples` record it trains on
        (``"chat"``, ``"text"``, ``"preference"`` or ``"classification"``).
    :param model_head: the model class it trains: ``"causal-lm"`` or ``"sequence-classification"``.
    """

    kind: ClassVar[str] = "objective"
    example_kind: str = "chat"
    model_head: str = "causal-lm"


@dataclass(frozen=True)
class DataFormatSpec(ComponentSpec):
    """A data format (alpaca, sharegpt, ...); builds a :class:`~ftx_hookspecs.DataFormat`.

    :param example_kind: the kind of record it produces.
    :param fields: the row fields it reads, for ``[data.columns]`` mapping and documentation.
    """

    kind: ClassVar[str] = "data format"
    example_kind: str = "chat"
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class RewardSpec(ComponentSpec):
    """A reward function or reward model for RL and reward evaluation; builds a :class:`~ftx_hookspecs.Reward`."""

    kind: ClassVar[str] = "reward"


@dataclass(frozen=True)
class EvaluatorSpec(ComponentSpec):
    """An evaluator (metric) run before and after training; builds an :class:`~ftx_hookspecs.Evaluator`."""

    kind: ClassVar[str] = "evaluator"


@dataclass(frozen=True)
class CommandSpec(ComponentSpec):
    """An extra ``ftx`` sub-command; the factory returns a ``click.Command`` and is loaded only when invoked."""

    kind: ClassVar[str] = "command"


@dataclass(frozen=True)
class LoggerSpec(ComponentSpec):
    """An experiment tracker (tensorboard, mlflow, ...); builds a :class:`~ftx_hookspecs.Logger`."""

    kind: ClassVar[str] = "logger"


@dataclass(frozen=True)
class KernelSpec(ComponentSpec):
    """Faster layers swapped into a loaded model (fused kernels such as Liger); builds a :class:`~ftx_hookspecs.Kernel`.

    Selected with ``[[kernels]] use = ...``; applied after the model loads and before the method
    wraps it, so adapters and quantisation see the swapped layers.
    """

    kind: ClassVar[str] = "kernel"
