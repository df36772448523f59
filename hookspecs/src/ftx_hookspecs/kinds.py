"""The one table of component kinds: each kind's spec class, registration hook and Protocol.

The core derives everything kind-shaped from this table (registration, the registry, ``ftx
plugins``, the scaffold's ``--kind`` choices), so a new kind is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from .components import (
    CommandSpec,
    ComponentSpec,
    DataFormatSpec,
    EvaluatorSpec,
    KernelSpec,
    LoggerSpec,
    MethodSpec,
    ObjectiveSpec,
    RewardSpec,
)
from .protocols import DataFormat, Evaluator, Kernel, Logger, Method, Objective, Reward


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component.

    :param name: the kind as messages name it (``"data format"``); equal to ``spec.kind``.
    :param spec: the spec class its plugins register.
    :param hook: the registration hook that collects it.
    :param protocol: what its factory returns (``None`` for commands: a ``click.Command``).
    :param selected_by: how a recipe selects one, for messages and docs.
    """

    name: str
    spec: type[ComponentSpec]
    hook: str
    protocol: type | None
    selected_by: str

    @property
    def slug(self) -> str:
        """The kind in command-line form (``data-format``), as ``ftx new-plugin --kind`` takes it."""
        return self.name.replace(" ", "-")


COMPONENT_KINDS: tuple[ComponentKind, ...] = (
    ComponentKind("method", MethodSpec, "ftx_register_methods", Method, "[method] use"),
    ComponentKind("objective", ObjectiveSpec, "ftx_register_objectives", Objective, "[objective] use"),
    ComponentKind("data format", DataFormatSpec, "ftx_register_data_formats", DataFormat, "[data] format"),
    ComponentKind("reward", RewardSpec, "ftx_register_rewards", Reward, "rewards = [{use = ...}]"),
    ComponentKind("evaluator", EvaluatorSpec, "ftx_register_evaluators", Evaluator, "[[evaluators]] use"),
    ComponentKind("command", CommandSpec, "ftx_register_commands", None, "ftx <command>"),
    ComponentKind("logger", LoggerSpec, "ftx_register_loggers", Logger, "[[loggers]] use"),
    ComponentKind("kernel", KernelSpec, "ftx_register_kernels", Kernel, "[[kernels]] use"),
)
"""Every component kind, in the order ``ftx plugins`` lists them."""

KIND_BY_NAME: dict[str, ComponentKind] = {k.name: k for k in COMPONENT_KINDS}
KIND_BY_HOOK: dict[str, ComponentKind] = {k.hook: k for k in COMPONENT_KINDS}
