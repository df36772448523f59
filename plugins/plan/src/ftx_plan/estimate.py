"""``ftx plan``: will a recipe fit in memory? Answered from the model's config alone, before anything loads.

The plan starts from full fine-tuning of the model's :class:`~ftx_hookspecs.ModelShape` and asks
the recipe's components what they change, through the optional ``memory_plan`` of their options
(:class:`~ftx_hookspecs.MemoryPlanner`): the method (which parameters train, in which dtype, how
the base is stored), each kernel, then the objective (a reference model, two sequences per
example). This module names no component. It then adds up what training holds at its peak:

* weights, as the method stores them, and frozen copies an objective keeps;
* gradients and AdamW's two moments for the trainable parameters, at the method's bytes per parameter;
* activations kept for the backward pass at ``batch_size x max_length`` tokens (every example
  padded to ``max_length``, the worst case), or only each layer's input with gradient checkpointing;
  plus the logits and their gradient (unless a kernel computes the loss in chunks);
* on CPU, the resident memory of the Python process with torch and transformers imported.

It is an estimate, checked against measured peaks in ``tests/test_plan.py``; architectures other
than the usual decoder (Llama, Mistral, Qwen, GPT-2, ...) are counted as if they were one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ftx_hookspecs import MemoryPlan, MemoryPlanner, ModelShape
from ftx_hookspecs.memory import dtype_bytes

from .shape import shape_from_config

GIB = 1024**3
MIB = 1024**2

RUNTIME_BYTES_CPU = 600 * MIB
"""Resident memory of a training process before the model loads (Python, torch, transformers, data)."""
CUDA_CONTEXT_BYTES = 600 * MIB
"""Memory the CUDA context and kernels take on a GPU beyond what torch allocates."""

__all__ = ["Estimate", "Inputs", "Selection", "estimate", "format_report", "plan_memory", "plan_report",
           "shape_from_config"]


@dataclass(frozen=True)
class Inputs:
    """What the recipe's core tables ask for, reduced to what decides memory; knobs are changes to it."""

    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 8
    max_length: int = 512
    gradient_checkpointing: bool = False
    optimizer: str = "adamw_torch"


@dataclass(frozen=True)
class Selection:
    """The components a recipe selected: ``(kind, name, options)`` for the method, kernels and objective."""

    method: tuple[str, Any]
    kernels: tuple[tuple[str, Any], ...] = ()
    objective: tuple[str, Any] | None = None

    def steps(self) -> list[tuple[str, str, Any]]:
        """``(kind, name, options)`` in the order the plan asks them: method, kernels, objective."""
        out = [("method", *self.method)]
        out += [("kernel", name, options) for name, options in self.kernels]
        if self.objective is not None:
            out.append(("objective", *self.objective))
        return out


@dataclass
class Estimate:
    """The folded plan and the bytes at the peak of training, by what holds them."""

    method: str
    plan: MemoryPlan
    bytes: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "plan": dataclasses.asdict(self.plan),
            "total_params": self.plan.total_params,
            "trainable_params": self.plan.trainable_params,
            "bytes": dict(self.bytes),
            "total_bytes": self.total_bytes,
        }


def base_plan(shape: ModelShape, inputs: Inputs) -> MemoryPlan:
    """Full fine-tuning in ``inputs.dtype``: what a plan is before any component changes it."""
    total = shape.total_params()
    elt = dtype_bytes(inputs.dtype)
    return MemoryPlan(device=inputs.device, dtype=inputs.dtype, batch_size=inputs.batch_size,
                      max_length=inputs.max_length, gradient_checkpointing=inputs.gradient_checkpointing,
                      optimizer=inputs.optimizer, total_params=total, trainable_params=total,
                      weight_bytes=total * elt, trainable_bytes=elt)


def plan_memory(shape: ModelShape, inputs: Inputs, selection: Selection) -> MemoryPlan:
    """Fold every selected component's ``memory_plan`` into the base plan; a component without one changes nothing."""
    plan = base_plan(shape, inputs)
    for kind, name, options in selection.steps():
        if isinstance(options, MemoryPlanner):
            plan = options.memory_plan(shape, plan)
        elif kind in ("method", "kernel"):
            effect = "estimated as full fine-tuning" if kind == "method" else "its effect is not counted"
            plan = replace(plan, notes=(*plan.notes, f"{kind} {name!r} does not plan its memory: {effect}"))
    return plan


def activation_bytes(shape: ModelShape, plan: MemoryPlan) -> int:
    """Activations saved for backward at ``batch_size x max_length`` tokens, plus logits and their gradient.

    Per token and block, a Llama-style block keeps about 10 hidden-sized and 4 intermediate-sized
    vectors (norm inputs, q/k/v, attention output, MLP gate/up/product, and dropout/residual copies);
    with checkpointing it keeps one hidden-sized input per block and one block's worth at a time.
    """
    elt = dtype_bytes(plan.dtype)
    sequences = plan.batch_size * plan.sequences_per_example
    tokens = sequences * plan.max_length
    kv = shape.kv_heads * shape.head_dim
    per_block = 8 * shape.hidden + 2 * kv + (4 if shape.gated else 2) * shape.intermediate
    attention = sequences * shape.heads * plan.max_length**2 if plan.device == "cpu" else 0
    if plan.gradient_checkpointing:
        kept = tokens * shape.hidden * shape.layers + tokens * per_block + attention
    else:
        kept = (tokens * per_block + attention) * shape.layers
    logits = 0 if plan.chunked_loss else tokens * shape.vocab * 3  # logits, their float32 copy, the gradient
    return int(kept * elt + logits * 4)


def estimate(shape: ModelShape, inputs: Inputs, selection: Selection) -> Estimate:
    """Bytes for weights, gradients, optimizer states, activations and runtime of ``selection`` under ``inputs``."""
    plan = plan_memory(shape, inputs, selection)
    optimizer_elt = 1 if "8bit" in plan.optimizer else plan.trainable_bytes
    out = {"weights": plan.weight_bytes}
    if plan.extra_weight_bytes:
        out["reference"] = plan.extra_weight_bytes
    out["gradients"] = plan.trainable_params * plan.trainable_bytes
    out["optimizer"] = 2 * plan.trainable_params * optimizer_elt
    out["activations"] = activation_bytes(shape, plan)
    out["runtime"] = RUNTIME_BYTES_CPU if plan.device == "cpu" else 0
    return Estimate(selection.method[0], plan, out)


# -- knobs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """A change to the recipe that may lower memory: what to set, and how it changes the inputs or selection."""

    text: str
    change: Callable[[Inputs, Selection], tuple[Inputs, Selection]]
    group: str
    """Knobs of one group exclude each other in a combination (e.g. two different methods)."""


def _halve(value: int) -> int:
    return max(1, value // 2)


CORE_KNOBS = [
    Knob("train.gradient_checkpointing = true",
         lambda i, s: (replace(i, gradient_checkpointing=True), s), "checkpointing"),
    Knob("halve train.batch_size (double train.grad_accum to keep the effective batch)",
         lambda i, s: (replace(i, batch_size=_halve(i.batch_size)), s), "batch"),
    Knob("halve data.max_length", lambda i, s: (replace(i, max_length=_halve(i.max_length)), s), "length"),
    Knob("train.optimizer = \"adamw_bnb_8bit\" (8-bit Adam moments)",
         lambda i, s: (replace(i, optimizer="adamw_bnb_8bit"), s), "optimizer"),
    Knob("model.dtype = \"bfloat16\"", lambda i, s: (replace(i, dtype="bfloat16"), s), "dtype"),
]


def method_knobs(methods: Mapping[str, Any], current: str) -> list[Knob]:
    """One knob per other installed method that plans its memory, with its default options."""
    knobs = []
    for name, options in sorted(methods.items()):
        if name == current or not isinstance(options, MemoryPlanner):
            continue
        knobs.append(Knob(f"[method] use = \"{name}\"",
                          lambda i, s, chosen=(name, options): (i, replace(s, method=chosen)), "method"))
    return knobs


def _describe(knob: Knob, shape: ModelShape, inputs: Inputs, selection: Selection) -> str:
    if knob.group != "method":
        return knob.text
    new_inputs, new_selection = knob.change(inputs, selection)
    details = plan_memory(shape, new_inputs, new_selection).details
    return knob.text + (f" ({', '.join(details)})" if details else "")


def knobs(shape: ModelShape, inputs: Inputs, selection: Selection, budget: int,
          extra: Sequence[Knob] = ()) -> list[tuple[str, int, bool]]:
    """Each change that would lower the estimate: ``(what to set, new total bytes, fits)``, best first.

    When no single change fits, a last row combines changes (largest saving first) until it fits.
    """
    candidates = [k for k in [*CORE_KNOBS, *extra] if not (k.group == "dtype" and inputs.device == "cpu")]

    def total(i: Inputs, s: Selection) -> int:
        return estimate(shape, i, s).total_bytes

    base = total(inputs, selection)
    rows = []
    for knob in candidates:
        new_inputs, new_selection = knob.change(inputs, selection)
        if (new_inputs, new_selection) == (inputs, selection):
            continue
        new = total(new_inputs, new_selection)
        if new < base:
            rows.append((_describe(knob, shape, inputs, selection), new, new <= budget))
    rows.sort(key=lambda row: row[1])
    if base > budget and rows and not any(fits for _, _, fits in rows):
        current, chosen, groups, now = (inputs, selection), [], set(), base
        for _ in range(len(candidates)):
            options = []
            for knob in candidates:
                if knob.group in groups:
                    continue
                changed = knob.change(*current)
                if changed != current:
                    options.append((total(*changed), knob, changed))
            options = [o for o in options if o[0] < now]
            if not options:
                break
            now, knob, changed = min(options, key=lambda o: o[0])
            chosen.append(_describe(knob, shape, *current))
            groups.add(knob.group)
            current = changed
            if now <= budget:
                break
        if len(chosen) > 1:
            rows.append(("all of: " + "; ".join(chosen), now, now <= budget))
    return rows


# -- the report ----------------------------------------------------------------------------------


def device_memory(device: str) -> tuple[str, int]:
    """``(description, bytes)`` of the memory training would use: the GPU's, else the machine's RAM."""
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / GIB:.1f} GiB)", int(props.total_memory) - CUDA_CONTEXT_BYTES
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"CPU RAM ({total / GIB:.1f} GiB)", int(total)


def plan_device(requested: str) -> str:
    """The device a run would use, for planning: the recipe's, or what ``auto`` picks (MPS counts as CPU)."""
    from ftx.api import resolve_device

    device = resolve_device(requested)
    return "cpu" if device == "mps" else device


def inputs_from_recipe(recipe: Any, device: str) -> Inputs:
    """The :class:`Inputs` of a validated recipe on ``device``."""
    dtype = recipe.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return Inputs(device=device, dtype=dtype, batch_size=recipe.train.batch_size, max_length=recipe.data.max_length,
                  gradient_checkpointing=recipe.train.gradient_checkpointing, optimizer=recipe.train.optimizer)


def selection_from_recipe(recipe: Any) -> Selection:
    """The method, kernels and objective a validated recipe selected, with their options."""
    return Selection(method=(recipe.method.name, recipe.method.options),
                     kernels=tuple((k.name, k.options) for k in getattr(recipe, "kernels", []) or []),
                     objective=(recipe.objective.name, recipe.objective.options))


def installed_methods(registry: Any) -> dict[str, Any]:
    """Each registered method's default options (those that have defaults for every option)."""
    out = {}
    for registered in registry.all("method"):
        try:
            out[registered.spec.name] = registered.spec.options()
        except Exception:  # noqa: BLE001, S112 - a method whose options need values is not offered as a knob
            continue
    return out


def format_bytes(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def plan_report(recipe: Any, device: str | None = None, memory: int | None = None, *,
                registry: Any = None, trust_remote_code: bool = False) -> dict[str, Any]:
    """Everything ``ftx plan`` prints, as data: shape, estimate, budget, verdict, knobs, notes.

    :param registry: the plugin registry whose methods are offered as knobs (default: the installed plugins').
    """
    from ftx.api import model_config, plugin_manager

    device = device or plan_device(recipe.train.device)
    shape = shape_from_config(model_config(recipe.model, trust_remote_code=trust_remote_code))
    inputs, selection = inputs_from_recipe(recipe, device), selection_from_recipe(recipe)
    est = estimate(shape, inputs, selection)
    label, budget = device_memory(device) if memory is None else (f"given ({format_bytes(memory)})", memory)
    registry = registry if registry is not None else plugin_manager().registry
    extra = method_knobs(installed_methods(registry), recipe.method.name)
    return {
        "model": recipe.model.name,
        "shape": dataclasses.asdict(shape),
        "device": device,
        "memory": label,
        "budget_bytes": budget,
        "estimate": est.as_dict(),
        "fits": est.total_bytes <= budget,
        "knobs": [{"set": t, "total_bytes": b, "fits": f} for t, b, f in knobs(shape, inputs, selection, budget, extra)],
        "notes": list(est.plan.notes),
    }


def format_report(report: Mapping[str, Any]) -> str:
    """The human-readable plan."""
    est = report["estimate"]
    plan = est["plan"]
    words = ", ".join([est["method"], *plan["details"], plan["dtype"]])
    lines = [
        (f"model: {report['model']} ({report['shape']['model_type']}, {report['shape']['layers']} layers, "
         f"hidden {report['shape']['hidden']}, vocab {report['shape']['vocab']})"),
        f"parameters: {est['total_params']:,} total, {est['trainable_params']:,} trainable ({words})",
        (f"at batch {plan['batch_size']} x {plan['max_length']} tokens"
         f"{', gradient checkpointing' if plan['gradient_checkpointing'] else ''} on {report['device']}:"),
    ]
    for key, value in est["bytes"].items():
        lines.append(f"  {key:<12} {format_bytes(value):>12}")
    lines.append(f"  {'total':<12} {format_bytes(est['total_bytes']):>12}   vs {report['memory']}")
    verdict = "fits" if report["fits"] else "does NOT fit"
    lines.append(f"verdict: {verdict} ({100 * est['total_bytes'] / max(report['budget_bytes'], 1):.0f}% of the memory)")
    if report["knobs"]:
        lines.append("knobs that lower it:" if report["fits"] else "knobs that would make it fit:")
        shown = report["knobs"] if report["fits"] else [k for k in report["knobs"] if k["fits"]] or report["knobs"]
        for knob in shown[:8]:
            mark = "fits" if knob["fits"] else "still too big"
            lines.append(f"  {knob['set']}\n      -> {format_bytes(knob['total_bytes'])} ({mark})")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
