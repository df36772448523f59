"""The validated recipe object the runner works from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftx_hookspecs import ComponentSpec, Options

from ..registry import Provenance
from .schema import DataSection, DistributedSection, EvaluationSection, ModelSection, OutputSection, TrainSection


@dataclass(frozen=True)
class Selected:
    """A component a recipe selected, with its validated options and who provides it."""

    name: str
    spec: ComponentSpec
    options: Options
    provenance: Provenance
    path: str
    """The TOML path of its table, e.g. ``method`` or ``evaluators[0]``."""

    def build(self) -> Any:
        """Import the component's factory and build it from the options."""
        return self.spec.build(self.options)

    def to_dict(self) -> dict[str, Any]:
        """``{"use": name, **options}`` as in the recipe, defaults filled."""
        return {"use": self.name, **self.options.model_dump(mode="json")}


@dataclass
class Recipe:
    """A recipe that passed validation: every table typed, paths absolute."""

    model: ModelSection
    data: DataSection
    data_format: Selected
    method: Selected
    objective: Selected
    train: TrainSection
    evaluators: list[Selected]
    output: OutputSection
    path: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    loggers: list[Selected] = field(default_factory=list)
    """``[[loggers]]``: experiment trackers told about the run (built only when selected)."""
    kernels: list[Selected] = field(default_factory=list)
    """``[[kernels]]``: faster layers swapped into the model after it loads, in order."""

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data: what ``recipe.lock.toml`` records."""
        data = self.data.model_dump(mode="json")
        data.update(self.data_format.options.model_dump(mode="json"))
        loggers = {"loggers": [lg.to_dict() for lg in self.loggers]} if self.loggers else {}
        kernels = {"kernels": [k.to_dict() for k in self.kernels]} if self.kernels else {}
        return {
            "model": self.model.model_dump(mode="json"),
            "data": data,
            "method": self.method.to_dict(),
            "objective": self.objective.to_dict(),
            "train": self.train.model_dump(mode="json"),
            "evaluators": [e.to_dict() for e in self.evaluators],
            "output": self.output.model_dump(mode="json"),
            "evaluation": self.evaluation.model_dump(mode="json"),
            "distributed": self.distributed.model_dump(mode="json"),
            **loggers,
            **kernels,
        }

    def summary(self) -> str:
        """What the recipe selects, in one line: ``method=lora; objective=sft; format=alpaca; evaluators=...``."""
        parts = [f"method={self.method.name}", f"objective={self.objective.name}", f"format={self.data_format.name}"]
        if self.data.mix:
            from ..data.mix import mix_summary

            parts.append(f"mix={mix_summary(self.data)}")
        for label, chosen in (("evaluators", self.evaluators), ("loggers", self.loggers), ("kernels", self.kernels)):
            if chosen:
                parts.append(f"{label}=" + ",".join(c.name for c in chosen))
        return "; ".join(parts)

    def selected(self) -> list[Selected]:
        """Every component the recipe selects."""
        return [self.data_format, self.method, self.objective, *self.evaluators, *self.loggers, *self.kernels]

    def nested_uses(self) -> list[tuple[str, str]]:
        """``(TOML path, name)`` of every ``{use = ...}`` table inside a component's options: the rewards
        of an ``rl`` objective or a ``reward`` evaluator, built at run time with ``ctx.build_component``.
        The lock file records these components too."""
        found: list[tuple[str, str]] = []

        def walk(value: Any, path: str) -> None:
            if isinstance(value, dict):
                if isinstance(value.get("use"), str):
                    found.append((path, value["use"]))
                for key, item in value.items():
                    walk(item, f"{path}.{key}")
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, f"{path}[{index}]")

        for selected in self.selected():
            for key, value in selected.options.model_dump(mode="json").items():
                walk(value, f"{selected.path}.{key}")
        return found
